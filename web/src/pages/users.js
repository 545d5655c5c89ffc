// Users (administrators): list with their role grants, create (a role on every device or on
// some groups), change grants, disable and enable, end a user's login sessions. Grants are
// checked before they are sent: a known role, and a scope the hub can match (scopes.js).

import { get, post, put } from '../api.js';
import { h, when } from '../dom.js';
import { scopesProblem } from '../scopes.js';

/** "operator@tag:site-a, auditor@*" ↔ [{role, scope}]: one short line per user to edit. */
const grantsText = (grants) => grants.map((grant) => `${grant.role}@${grant.scope}`).join(', ');
function parseGrants(text) {
  return text.split(',').map((part) => part.trim()).filter(Boolean).map((part) => {
    const at = part.indexOf('@');
    return at < 0 ? { role: part, scope: '*' } : { role: part.slice(0, at).trim(), scope: part.slice(at + 1).trim() };
  });
}
const groupsOf = (text) => text.split(',').map((group) => group.trim()).filter(Boolean);

export function usersPage(container) {
  const body = h('tbody');
  const error = h('p', { class: 'error', id: 'users-error', role: 'alert' });
  const message = h('p', { class: 'notice', id: 'users-message' });
  const name = h('input', { id: 'user-name', placeholder: 'name', required: true });
  const password = h('input', { id: 'user-password', type: 'password', placeholder: 'initial password', autocomplete: 'new-password', required: true });
  const role = h('select', { id: 'user-role' }, h('option', { value: '' }, 'no role'));
  const groups = h('input', { id: 'user-groups', placeholder: 'groups, e.g. tag:site-a (empty: every device)', size: 36 });
  let roleNames = null;

  /** Why `grants` cannot be saved, or null. */
  async function grantsProblem(grants) {
    const unknown = roleNames && grants.find((grant) => !roleNames.includes(grant.role));
    if (unknown) return `“${unknown.role}” is not a role (roles: ${roleNames.join(', ')}).`;
    return scopesProblem(grants.map((grant) => grant.scope));
  }

  async function act(method, path, body, done, check = async () => null) {
    error.textContent = '';
    message.textContent = '';
    try {
      const problem = await check();
      if (problem) {
        error.textContent = problem;
        return;
      }
      const answer = await method(path, body);
      message.textContent = done(answer);
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  function row(account) {
    const path = `users/${encodeURIComponent(account.name)}`;
    const grants = h('input', { class: 'grants', size: 30, value: grantsText(account.roles || []), title: 'role@scope, comma-separated; scope * (every device), tag:NAME or a device id' });
    return h('tr', { dataset: { user: account.name } },
      h('td', {}, account.name),
      h('td', {}, h('form', { class: 'toolbar', onsubmit: (event) => {
        event.preventDefault();
        const parsed = parseGrants(grants.value);
        act(put, `${path}/roles`, { grants: parsed }, () => `Roles of ${account.name} saved.`, () => grantsProblem(parsed));
      } }, grants, h('button', { type: 'submit', class: 'small' }, 'Save'))),
      h('td', {}, account.disabled ? h('span', { class: 'error' }, 'disabled') : 'active'),
      h('td', {}, when(account.created_at)),
      h('td', {},
        account.disabled
          ? h('button', { type: 'button', class: 'small', onclick: () => act(post, `${path}/enable`, undefined, () => `${account.name} enabled.`) }, 'Enable')
          : h('button', { type: 'button', class: 'small', onclick: () => act(post, `${path}/disable`, undefined, () => `${account.name} disabled; their sessions ended.`) }, 'Disable'),
        ' ',
        h('button', { type: 'button', class: 'small', onclick: () => act(post, `${path}/revoke-sessions`, undefined, (a) => `${a.revoked} login session(s) of ${account.name} ended.`) }, 'End sessions')));
  }

  async function load() {
    try {
      const list = await get('users');
      body.replaceChildren(...list.users.map(row));
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  async function loadRoles() {
    try {
      const { roles } = await get('roles');
      role.append(...roles.map((r) => h('option', { value: r.name, title: r.permissions.join(', ') }, r.name)));
      role.value = roles.some((r) => r.name === 'operator') ? 'operator' : '';
      roleNames = roles.map((r) => r.name);
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  const form = h('form', { class: 'toolbar', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    const request = { name: name.value, password: password.value };
    if (role.value) {
      request.role = role.value;
      request.groups = groupsOf(groups.value);
    }
    try {
      const problem = request.groups ? await scopesProblem(request.groups) : null;
      if (problem) {
        error.textContent = problem;
        return;
      }
      await post('users', request);
      message.textContent = `${name.value} created.`;
      name.value = '';
      password.value = '';
      groups.value = '';
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  } }, name, password, h('label', {}, 'role ', role), groups, h('button', { type: 'submit', class: 'primary' }, 'Create user'));

  container.append(h('h1', {}, 'Users'), form, message, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'users' }, h('thead', {}, h('tr', {}, ['Name', 'Roles (role@scope)', 'Status', 'Created', ''].map((t) => h('th', {}, t)))), body)));
  loadRoles();
  load();
}
