// Roles (#/roles, whoever manages users): the built-in roles and the custom ones with their
// permissions; a custom role is created from a name, a description and permission boxes, and
// deleted after a confirmation (its holders lose what it gave at once: the hub re-checks their
// live sessions).

import { get, post, remove } from '../api.js';
import { h } from '../dom.js';

const HEADINGS = ['Role', 'Kind', 'Permissions', 'Description', ''];

export function rolesPage(container) {
  const body = h('tbody');
  const error = h('p', { class: 'error', id: 'roles-error', role: 'alert' });
  const message = h('p', { class: 'notice', id: 'roles-message', role: 'status' });
  const name = h('input', { id: 'role-name', required: true, size: 16, pattern: '[A-Za-z0-9._\\-]{1,64}', title: '1 to 64 letters, digits, -, _ or .' });
  const description = h('input', { id: 'role-description', size: 32 });
  const boxes = h('fieldset', { id: 'role-permissions', class: 'toolbar' }, h('legend', {}, 'Permissions'));

  async function act(work, done) {
    error.textContent = '';
    message.textContent = '';
    try {
      await work();
      message.textContent = done;
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  function row(role) {
    const remover = role.builtin ? null : h('button', {
      type: 'button',
      class: 'small',
      'aria-label': `Delete role ${role.name}`,
      onclick: () => {
        if (!window.confirm(`Delete the role ${role.name}? Users holding it lose its permissions at once.`)) return;
        act(() => remove(`roles/${encodeURIComponent(role.name)}`), `Role ${role.name} deleted.`);
      },
    }, 'Delete');
    return h('tr', { dataset: { role: role.name, builtin: String(role.builtin) } },
      h('th', { scope: 'row' }, role.name),
      h('td', {}, role.builtin ? 'built-in' : 'custom'),
      h('td', {}, role.permissions.map((permission) => h('span', { class: 'tag' }, permission))),
      h('td', {}, role.description),
      h('td', {}, remover));
  }

  /** Every permission the hub knows: the admin role holds them all. */
  function permissionBoxes(roles) {
    const known = [...new Set(roles.flatMap((role) => role.permissions))];
    const checked = new Set([...boxes.querySelectorAll('input:checked')].map((box) => box.value));
    boxes.replaceChildren(h('legend', {}, 'Permissions'), ...known.map((permission) => h('label', { class: 'tag' },
      h('input', { type: 'checkbox', value: permission, checked: checked.has(permission), dataset: { permission } }), ` ${permission}`)));
  }

  async function load() {
    try {
      const { roles } = await get('roles');
      body.replaceChildren(...roles.map(row));
      permissionBoxes(roles);
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  const form = h('form', { id: 'role-form', onsubmit: (event) => {
    event.preventDefault();
    const permissions = [...boxes.querySelectorAll('input:checked')].map((box) => box.value);
    if (!permissions.length) {
      error.textContent = 'A role needs at least one permission.';
      return;
    }
    const request = { name: name.value.trim(), description: description.value.trim(), permissions };
    act(async () => {
      await post('roles', request);
      name.value = '';
      description.value = '';
      for (const box of boxes.querySelectorAll('input')) box.checked = false;
    }, `Role ${request.name} created.`);
  } },
  h('div', { class: 'toolbar' }, h('label', {}, 'Name ', name), h('label', {}, 'Description ', description)),
  boxes,
  h('button', { type: 'submit', class: 'primary' }, 'Create role'));

  container.append(h('h1', {}, 'Roles'),
    h('section', { class: 'panel' }, h('h2', {}, 'New custom role'), form),
    message, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'roles' },
      h('thead', {}, h('tr', {}, HEADINGS.map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'visually-hidden' }, 'Actions'))))), body)));
  load();
}
