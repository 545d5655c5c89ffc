// Users (administrators): list with their role grants, create (a role on every device or on
// some groups), change grants, disable (after a confirmation) and enable, end a user's login
// sessions. A grant is added from lists (a role from `GET /roles`, a scope: every device, a
// known group or a device) or typed; grants are checked before they are sent: a known role,
// and a scope the hub can match (scopes.js).

import { get, post, put } from '../api.js';
import { h, when } from '../dom.js';
import { scopeChoices, scopesProblem } from '../scopes.js';

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
  /** The role and scope selects of every row and the create form, filled once both lists are known. */
  let roleOptions = [];
  let scopeOptions = [];
  const selects = { roles: [role], scopes: [] };
  const options = (list) => list.map(({ value, label, title }) => h('option', { value, title }, label));
  const fillRoles = (select) => {
    select.replaceChildren(...(select === role ? [h('option', { value: '' }, 'no role')] : []), ...options(roleOptions));
    if (roleOptions.some((option) => option.value === 'operator')) select.value = 'operator';
  };
  const fillScopes = (select) => select.replaceChildren(...options(scopeOptions));

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
    const grants = h('input', { class: 'grants', size: 30, value: grantsText(account.roles || []), 'aria-label': `Roles of ${account.name} (role@scope, comma-separated)`, title: 'role@scope, comma-separated; scope * (every device), tag:NAME or a device id' });
    const save = (parsed) => act(put, `${path}/roles`, { grants: parsed }, () => `Roles of ${account.name} saved.`, () => grantsProblem(parsed));
    const grantRole = h('select', { class: 'grant-role', 'aria-label': `Role to grant ${account.name}` });
    const grantScope = h('select', { class: 'grant-scope', 'aria-label': `Where ${account.name} gets the role` });
    fillRoles(grantRole);
    fillScopes(grantScope);
    selects.roles.push(grantRole);
    selects.scopes.push(grantScope);
    const add = () => {
      const parsed = [...parseGrants(grants.value), { role: grantRole.value, scope: grantScope.value }];
      grants.value = grantsText(parsed);
      save(parsed);
    };
    const disable = () => {
      if (!window.confirm(`Disable ${account.name}? Their login sessions and terminals end at once.`)) return;
      act(post, `${path}/disable`, undefined, () => `${account.name} disabled; their sessions ended.`);
    };
    return h('tr', { dataset: { user: account.name } },
      h('th', { scope: 'row' }, account.name),
      h('td', {}, h('form', { class: 'toolbar', onsubmit: (event) => {
        event.preventDefault();
        save(parseGrants(grants.value));
      } }, grants, h('button', { type: 'submit', class: 'small' }, 'Save')),
      h('div', { class: 'toolbar grant-add' }, grantRole, grantScope,
        h('button', { type: 'button', class: 'small', onclick: add, 'aria-label': `Add grant to ${account.name}` }, 'Add grant'))),
      h('td', {}, account.disabled ? h('span', { class: 'error' }, 'disabled') : 'active'),
      h('td', {}, when(account.created_at)),
      h('td', {},
        account.disabled
          ? h('button', { type: 'button', class: 'small', onclick: () => act(post, `${path}/enable`, undefined, () => `${account.name} enabled.`) }, 'Enable')
          : h('button', { type: 'button', class: 'small', onclick: disable }, 'Disable'),
        ' ',
        h('button', { type: 'button', class: 'small', onclick: () => act(post, `${path}/revoke-sessions`, undefined, (a) => `${a.revoked} login session(s) of ${account.name} ended.`) }, 'End sessions')));
  }

  async function load() {
    try {
      const list = await get('users');
      selects.roles = [role];
      selects.scopes = [scope];
      body.replaceChildren(...list.users.map(row));
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  async function loadRoles() {
    try {
      const { roles } = await get('roles');
      roleOptions = roles.map((r) => ({ value: r.name, label: r.name, title: r.permissions.join(', ') }));
      roleNames = roles.map((r) => r.name);
      for (const select of selects.roles) fillRoles(select);
      role.value = roles.some((r) => r.name === 'operator') ? 'operator' : '';
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  async function loadScopes() {
    try {
      scopeOptions = await scopeChoices();
      for (const select of selects.scopes) fillScopes(select);
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  /** The create form's scope list adds its choice to the groups (empty: every device). */
  const scope = h('select', { id: 'user-scope', 'aria-label': 'Add a group or device to the new user’s role', onchange: () => {
    const chosen = scope.value;
    if (chosen === '*') groups.value = '';
    else if (chosen && !groupsOf(groups.value).includes(chosen)) groups.value = [...groupsOf(groups.value), chosen].join(', ');
  } });
  selects.scopes.push(scope);

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
  } }, h('label', {}, 'Name ', name), h('label', {}, 'Password ', password), h('label', {}, 'role ', role),
  h('label', {}, 'on ', groups), scope, h('button', { type: 'submit', class: 'primary' }, 'Create user'));

  container.append(h('h1', {}, 'Users'), form, message, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'users' }, h('thead', {}, h('tr', {}, ['Name', 'Roles (role@scope)', 'Status', 'Created', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'visually-hidden' }, 'Actions'))))), body)));
  loadRoles();
  loadScopes();
  load();
}
