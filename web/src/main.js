// The UI's entry: restores the session from the cookie, then routes `#/page/...` to a page.
// Each page is a function (container, ...route parameters) that may return a cleanup function,
// or {cleanup, leaving}: `leaving()` names what leaving the page would end (a running shell),
// and the page asks before letting the user go (a header link, Back, closing the tab).
//
// An unreachable hub (restarting, a network cut) is not a logout: a banner says so and the page
// keeps asking until the hub answers, keeping the login and whatever the page was doing.
//
// The header offers only the pages the user can use (the session's `permissions`; the hub still
// checks every request), and counts the access requests waiting for an approver. The first
// focusable element is a "Skip to content" link to the page's main region.

import '@xterm/xterm/css/xterm.css';
import './style.css';
import { checkSession, hubReachable, logout, may, user, whenExpired, whenReachability } from './api.js';
import { startPendingBadge } from './pending_badge.js';
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
import { sessionsPage } from './pages/sessions.js';
import { rolesPage } from './pages/roles.js';

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
  sessions: sessionsPage,
  roles: rolesPage,
};

/** Longest pause between two questions to an unreachable hub. */
const MAX_RETRY_MS = 3000;

const app = document.getElementById('app');
const top = document.getElementById('top');
const banner = document.getElementById('hub-status');
let cleanup = null;
let leaving = null;
let notice = '';
/** The route shown, to return to when the user stays on a page after all. */
let shownHash = location.hash;

function show(render, ...parameters) {
  if (cleanup) cleanup();
  cleanup = null;
  leaving = null;
  app.replaceChildren();
  const result = render(app, ...parameters);
  if (typeof result === 'function') cleanup = result;
  else if (result) ({ cleanup = null, leaving = null } = result);
}

/** True when the user agrees to leave the page (or nothing would be lost). */
function mayLeave() {
  const loss = leaving && leaving();
  return !loss || window.confirm(`${loss}\n\nLeave anyway?`);
}

function route() {
  const [name, ...parameters] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  shownHash = location.hash;
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
  for (const link of top.querySelectorAll('nav a[data-needs]')) link.hidden = !may(link.dataset.needs);
  startPendingBadge();
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

// The skip link moves the focus into the page without touching the route (`#app` is no page).
document.getElementById('skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  app.focus();
  app.scrollIntoView();
});

whenExpired((message) => {
  notice = message;
  route();
});

document.getElementById('logout').addEventListener('click', async () => {
  if (!mayLeave()) return;
  await logout().catch(() => {});
  notice = 'You have logged out.';
  location.hash = '#/login';
  route();
});

window.addEventListener('hashchange', () => {
  if (location.hash === shownHash) return;
  if (!mayLeave()) {
    // Stay: put the shown page's address back without routing again.
    history.replaceState(null, '', shownHash || '#/');
    return;
  }
  route();
});

window.addEventListener('beforeunload', (event) => {
  if (leaving && leaving()) {
    event.preventDefault();
    // Older browsers show the dialog only for a non-empty returnValue.
    event.returnValue = '';
  }
});

let probing = false;
/** While the hub does not answer, asks for the session now and then; it stops once it does. */
async function probe() {
  if (probing) return;
  probing = true;
  for (let delay = 500; !hubReachable(); delay = Math.min(delay * 2, MAX_RETRY_MS)) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    // The hub is back and says the login ended meanwhile (revoked, expired): log out now.
    if ((await checkSession()) === 'expired' && !top.hidden) {
      notice = 'Your session has ended; please log in again.';
      route();
    }
  }
  probing = false;
}

whenReachability((answering) => {
  banner.hidden = answering;
  if (!answering) probe();
});

async function start() {
  app.replaceChildren(Object.assign(document.createElement('p'), { className: 'notice', textContent: 'Connecting to the hub…' }));
  // Until the hub answers, the login is neither valid nor ended: wait for a verdict.
  for (let delay = 500; (await checkSession()) === 'unknown'; delay = Math.min(delay * 2, MAX_RETRY_MS)) {
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  route();
}

start();
