// Access requests (#/access): ask for time-limited access to a device or a group (terminal,
// files, port forwarding), follow one's own requests and revoke them; approvers also see
// everyone's requests and approve, deny (after a confirmation) or revoke them. A 403 on the full
// list means the user approves nothing: that section stays hidden. Whoever manages users also
// edits the approval policies: which groups or devices need an approved request.

import { HttpError, get, may, post, put } from '../api.js';
import { h, when } from '../dom.js';
import { refreshPendingBadge } from '../pending_badge.js';
import { scopeChoices, scopeProblem } from '../scopes.js';

const PERMISSIONS = ['terminal', 'file_read', 'file_write', 'port_forward'];
const DURATIONS = [['15 minutes', 900], ['1 hour', 3600], ['4 hours', 14400], ['1 day', 86400], ['7 days', 604800]];
const HEADINGS = ['Requested', 'User', 'Scope', 'Permissions', 'For', 'Reason', 'Status', ''];
const heading = (text) => h('th', { scope: 'col' }, text || h('span', { class: 'visually-hidden' }, 'Actions'));

function duration(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function status(request) {
  const detail = [];
  if (request.decided_by) detail.push(`by ${request.decided_by}`);
  if (request.status === 'approved' && request.expires_at) detail.push(`until ${when(request.expires_at)}`);
  if (request.note) detail.push(`“${request.note}”`);
  return [h('span', { class: `status ${request.status}`, dataset: { status: request.status } }, request.status),
    detail.length ? h('div', { class: 'notice' }, detail.join(' · ')) : null];
}

export function accessPage(container) {
  const error = h('p', { class: 'error', id: 'access-error' });
  const message = h('p', { class: 'notice', id: 'access-message' });
  const own = h('tbody');
  const everyone = h('tbody');
  const approvals = h('section', { class: 'panel', id: 'access-approvals', hidden: true }, h('h2', {}, 'Requests to decide (approver)'),
    h('div', { class: 'table-scroll' }, h('table', { id: 'access-all' }, h('thead', {}, h('tr', {}, HEADINGS.map(heading))), everyone)));

  async function act(request, verb, body) {
    error.textContent = '';
    if (verb === 'deny' && !window.confirm(`Deny the request of ${request.user_name} for ${request.scope}?`)) return;
    try {
      await post(`access/requests/${encodeURIComponent(request.id)}/${verb}`, body);
      message.textContent = `Request of ${request.user_name} for ${request.scope}: ${verb === 'deny' ? 'denied' : `${verb}d`}.`;
      load();
      refreshPendingBadge();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  function row(request, approver) {
    const actions = [];
    const note = approver && request.status === 'pending' ? h('input', { class: 'note', placeholder: 'note', size: 12, 'aria-label': `Note on the request of ${request.user_name}` }) : null;
    if (note) {
      actions.push(note,
        h('button', { type: 'button', class: 'small primary', onclick: () => act(request, 'approve', { note: note.value || undefined }) }, 'Approve'),
        h('button', { type: 'button', class: 'small', onclick: () => act(request, 'deny', { note: note.value || undefined }) }, 'Deny'));
    }
    if (request.status === 'approved' || (!approver && request.status === 'pending')) {
      actions.push(h('button', { type: 'button', class: 'small', onclick: () => act(request, 'revoke') }, request.status === 'pending' ? 'Withdraw' : 'Revoke'));
    }
    return h('tr', { dataset: { request: request.id, scope: request.scope, user: request.user_name } },
      h('td', {}, when(request.created_at)),
      h('td', {}, request.user_name),
      h('td', {}, request.scope),
      h('td', {}, request.permissions.map((permission) => h('span', { class: 'tag' }, permission))),
      h('td', {}, duration(request.duration_secs)),
      h('td', {}, request.reason),
      h('td', {}, status(request)),
      h('td', {}, actions));
  }

  const fill = (body, requests, approver) => {
    body.replaceChildren(...requests.map((request) => row(request, approver)));
    if (!requests.length) body.append(h('tr', {}, h('td', { colspan: HEADINGS.length, class: 'notice' }, 'No requests.')));
  };

  async function load() {
    try {
      fill(own, (await get('access/requests')).requests, false);
    } catch (failure) {
      error.textContent = failure.message;
    }
    try {
      fill(everyone, (await get('access/requests?all=true')).requests, true);
      approvals.hidden = false;
    } catch (failure) {
      approvals.hidden = true;
      if (!(failure instanceof HttpError && failure.status === 403)) error.textContent = failure.message;
    }
  }

  const scope = h('input', { id: 'access-scope', placeholder: 'device id or tag:NAME', size: 28, required: true });
  const boxes = PERMISSIONS.map((permission) => h('input', { type: 'checkbox', value: permission, checked: permission === 'terminal', dataset: { permission } }));
  const length = h('select', { id: 'access-duration' }, DURATIONS.map(([label, seconds]) => h('option', { value: seconds }, label)));
  length.value = '3600';
  const reason = h('input', { id: 'access-reason', placeholder: 'reason (ticket, incident…)', size: 32, required: true });
  const form = h('form', { id: 'access-form', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    const permissions = boxes.filter((box) => box.checked).map((box) => box.value);
    try {
      const problem = await scopeProblem(scope.value, { unseen: true });
      if (problem) {
        error.textContent = problem;
        return;
      }
      const created = await post('access/requests', { scope: scope.value.trim(), permissions, duration_secs: Number(length.value), reason: reason.value });
      message.textContent = `Requested access to ${created.scope}; an approver will decide.`;
      reason.value = '';
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  } },
  h('div', { class: 'toolbar' }, h('label', {}, 'Scope ', scope), h('label', {}, 'for ', length)),
  h('div', { class: 'toolbar' }, boxes.map((box) => h('label', { class: 'tag' }, box, ` ${box.value}`))),
  h('div', { class: 'toolbar' }, reason, h('button', { type: 'submit', class: 'primary' }, 'Request access')));

  container.append(h('h1', {}, 'Access requests'),
    may('manage_users') ? policiesPanel() : null,
    h('section', { class: 'panel' }, h('h2', {}, 'Request access'),
      h('p', { class: 'notice' }, 'Time-limited access to a device or a group of devices, granted when an approver agrees.'), form),
    h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'access-refresh', onclick: load }, 'Refresh'), message), error,
    h('section', { class: 'panel' }, h('h2', {}, 'My requests'),
      h('div', { class: 'table-scroll' }, h('table', { id: 'access-mine' }, h('thead', {}, h('tr', {}, HEADINGS.map(heading))), own))),
    approvals);
  load();
}

/**
 * The approval policies (whoever manages users): the groups and devices on which terminals,
 * files and forwarding need an approved request; one is added from a list, or removed.
 */
function policiesPanel() {
  const list = h('ul', { id: 'policies' });
  const error = h('p', { class: 'error', id: 'policies-error', role: 'alert' });
  const scope = h('select', { id: 'policy-scope', 'aria-label': 'Group or device that needs approval' });

  const show = (scopes) => {
    list.replaceChildren(...scopes.map((text) => h('li', { dataset: { scope: text } }, h('code', {}, text), ' ',
      h('button', { type: 'button', class: 'small', 'aria-label': `Stop requiring approval on ${text}`, onclick: () => change(text, false) }, 'Stop requiring'))));
    if (!scopes.length) list.append(h('li', { class: 'notice' }, 'No group or device needs approval.'));
  };

  async function change(text, required) {
    error.textContent = '';
    try {
      show((await put('access/policies', { scope: text, require_approval: required })).require_approval);
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  (async () => {
    try {
      show((await get('access/policies')).require_approval);
      // Every device at once is not a policy the hub takes: only groups and devices.
      const choices = (await scopeChoices()).filter((choice) => choice.value !== '*');
      scope.replaceChildren(...choices.map(({ value, label }) => h('option', { value }, label)));
    } catch (failure) {
      error.textContent = failure.message;
    }
  })();

  return h('section', { class: 'panel', id: 'access-policies' }, h('h2', {}, 'Approval policies'),
    h('p', { class: 'notice' }, 'On these groups and devices, terminals, files and port forwarding need an approved request.'),
    list,
    h('form', { class: 'toolbar', onsubmit: (event) => {
      event.preventDefault();
      if (scope.value) change(scope.value, true);
    } }, scope, h('button', { type: 'submit' }, 'Require approval')),
    error);
}
