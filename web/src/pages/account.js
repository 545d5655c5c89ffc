// The signed-in user's account: two-factor authentication, personal access tokens for scripts
// (create, shown once; list; revoke) and the password.

import { get, post, request, user } from '../api.js';
import { copyButton, h, when } from '../dom.js';
import { twoFactorPanel } from './two_factor.js';

const PERMISSIONS = ['view_devices', 'manage_devices', 'terminal', 'file_read', 'file_write',
  'port_forward', 'view_audit', 'view_recordings', 'approve_access', 'manage_users'];

function tokensPanel() {
  const body = h('tbody');
  const error = h('p', { class: 'error' });
  const created = h('div', { id: 'token-created' });
  const name = h('input', { id: 'token-name', placeholder: 'token name', required: true });
  const days = h('input', { id: 'token-days', type: 'number', min: 1, max: 365, value: 30, size: 4 });
  const boxes = PERMISSIONS.map((permission) => h('label', { class: 'tag' },
    h('input', { type: 'checkbox', value: permission, checked: permission === 'view_devices' }), ` ${permission}`));

  async function load() {
    try {
      const list = await get('tokens');
      body.replaceChildren(...list.tokens.map((token) => h('tr', { dataset: { token: token.name } },
        h('td', {}, token.name),
        h('td', {}, token.permissions.join(', ')),
        h('td', {}, when(token.created_at)),
        h('td', {}, when(token.expires_at)),
        h('td', {}, token.last_used_at ? when(token.last_used_at) : 'never'),
        h('td', {}, token.revoked ? 'revoked' : h('button', { type: 'button', class: 'small', onclick: async () => {
          try {
            await request('DELETE', `tokens/${encodeURIComponent(token.id)}`);
            load();
          } catch (failure) { error.textContent = failure.message; }
        } }, 'Revoke')))));
      if (!list.tokens.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'notice' }, 'No tokens.')));
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  const form = h('form', { class: 'toolbar', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    const permissions = boxes.map((box) => box.querySelector('input')).filter((box) => box.checked).map((box) => box.value);
    try {
      const token = await post('tokens', { name: name.value, permissions, expires_in_secs: Number(days.value) * 86400 });
      created.replaceChildren(h('p', {}, 'Copy the token now: it is not shown again.'),
        h('div', { class: 'toolbar' }, h('code', { class: 'command', id: 'token-secret' }, token.token), copyButton(token.token)));
      name.value = '';
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  } }, name, h('label', {}, 'valid for ', days, ' days'), h('button', { type: 'submit', class: 'primary' }, 'Create token'));

  load();
  return h('section', { class: 'panel' }, h('h2', {}, 'Access tokens'),
    h('p', { class: 'notice' }, 'For scripts and the CLI (TETHER_TOKEN); a token can do at most what it names, and never more than you.'),
    form, h('div', { class: 'toolbar' }, boxes), created, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'tokens' }, h('thead', {}, h('tr', {}, ['Name', 'Permissions', 'Created', 'Expires', 'Last used', ''].map((t) => h('th', {}, t)))), body)));
}

function passwordPanel() {
  const current = h('input', { type: 'password', id: 'current-password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', id: 'new-password', autocomplete: 'new-password', required: true });
  const message = h('p', { class: 'notice', id: 'password-message', role: 'status' });
  const form = h('form', { class: 'toolbar', onsubmit: async (event) => {
    event.preventDefault();
    try {
      await post('auth/password', { current_password: current.value, new_password: next.value });
      message.className = 'notice';
      message.textContent = 'Password changed; your other login sessions have ended.';
      current.value = '';
      next.value = '';
    } catch (failure) {
      message.className = 'error';
      message.textContent = failure.message;
    }
  } }, h('label', {}, 'Current ', current), h('label', {}, 'New ', next), h('button', { type: 'submit' }, 'Change password'));
  return h('section', { class: 'panel' }, h('h2', {}, 'Password'), form, message);
}

export function accountPage(container) {
  const me = user();
  container.append(h('h1', {}, `Account: ${me.name}${me.admin ? ' (administrator)' : ''}`), twoFactorPanel(), tokensPanel(), passwordPanel());
}
