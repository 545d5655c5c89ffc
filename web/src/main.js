// The UI's entry: restores the session from the cookie, then routes `#/page/...` to a page.
// Each page is a function (container, ...route parameters) that may return a cleanup function.

import '@xterm/xterm/css/xterm.css';
import './style.css';
import { logout, restoreSession, user, whenExpired } from './api.js';
import { loginPage } from './pages/login.js';
import { devicesPage } from './pages/devices.js';
import { devicePage } from './pages/device.js';
import { auditPage } from './pages/audit.js';
import { recordingsPage } from './pages/recordings.js';
import { playerPage } from './pages/player.js';
import { watchPage } from './pages/watch.js';
import { accountPage } from './pages/account.js';
import { usersPage } from './pages/users.js';
import { accessPage } from './pages/access.js';

const pages = {
  devices: devicesPage,
  device: devicePage,
  audit: auditPage,
  recordings: recordingsPage,
  play: playerPage,
  watch: watchPage,
  account: accountPage,
  users: usersPage,
  access: accessPage,
};

const app = document.getElementById('app');
const top = document.getElementById('top');
let cleanup = null;
let notice = '';

function show(render, ...parameters) {
  if (cleanup) cleanup();
  cleanup = null;
  app.replaceChildren();
  const result = render(app, ...parameters);
  if (typeof result === 'function') cleanup = result;
}

function route() {
  const [name, ...parameters] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const signedIn = user();
  top.hidden = !signedIn;
  if (!signedIn) {
    const message = notice;
    notice = '';
    show(loginPage, message, () => {
      if (!location.hash || location.hash === '#/login') location.hash = '#/devices';
      else route();
    });
    return;
  }
  document.getElementById('users-link').hidden = !signedIn.admin;
  document.getElementById('whoami').replaceChildren(Object.assign(document.createElement('a'), { href: '#/account', textContent: signedIn.name }));
  for (const link of top.querySelectorAll('nav a')) {
    link.classList.toggle('active', link.getAttribute('href') === `#/${name}`);
  }
  const page = pages[name];
  if (!page) {
    location.replace('#/devices');
    return;
  }
  show(page, ...parameters);
}

whenExpired((message) => {
  notice = message;
  route();
});

document.getElementById('logout').addEventListener('click', async () => {
  await logout().catch(() => {});
  notice = 'You have logged out.';
  location.hash = '#/login';
  route();
});

window.addEventListener('hashchange', route);
restoreSession().then(route);
