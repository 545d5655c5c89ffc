// Users (administrators): list, create, disable and enable, end a user's login sessions.
// Roles, 2FA and access requests join here as the access-control work adds them to the hub.

import { get, post } from '../api.js';
import { h, when } from '../dom.js';

export function usersPage(container) {
  const body = h('tbody');
  const error = h('p', { class: 'error' });
  const message = h('p', { class: 'notice' });
  const name = h('input', { id: 'user-name', placeholder: 'name', required: true });
  const password = h('input', { id: 'user-password', type: 'password', placeholder: 'initial password', autocomplete: 'new-password', required: true });
  const admin = h('input', { id: 'user-admin', type: 'checkbox' });

  async function act(path, done) {
    error.textContent = '';
    try {
      const answer = await post(path);
      message.textContent = done(answer);
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  async function load() {
    try {
      const list = await get('users');
      body.replaceChildren(...list.users.map((account) => {
        const path = `users/${encodeURIComponent(account.name)}`;
        return h('tr', { dataset: { user: account.name } },
          h('td', {}, account.name),
          h('td', {}, account.admin ? 'administrator' : 'user'),
          h('td', {}, account.disabled ? h('span', { class: 'error' }, 'disabled') : 'active'),
          h('td', {}, when(account.created_at)),
          h('td', {},
            account.disabled
              ? h('button', { type: 'button', class: 'small', onclick: () => act(`${path}/enable`, () => `${account.name} enabled.`) }, 'Enable')
              : h('button', { type: 'button', class: 'small', onclick: () => act(`${path}/disable`, () => `${account.name} disabled; their sessions ended.`) }, 'Disable'),
            ' ',
            h('button', { type: 'button', class: 'small', onclick: () => act(`${path}/revoke-sessions`, (a) => `${a.revoked} login session(s) of ${account.name} ended.`) }, 'End sessions')));
      }));
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  const form = h('form', { class: 'toolbar', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      await post('users', { name: name.value, password: password.value, admin: admin.checked });
      message.textContent = `${name.value} created.`;
      name.value = '';
      password.value = '';
      admin.checked = false;
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  } }, name, password, h('label', {}, admin, ' administrator'), h('button', { type: 'submit', class: 'primary' }, 'Create user'));

  container.append(h('h1', {}, 'Users'), form, message, error,
    h('table', { id: 'users' }, h('thead', {}, h('tr', {}, ['Name', 'Role', 'Status', 'Created', ''].map((t) => h('th', {}, t)))), body));
  load();
}
