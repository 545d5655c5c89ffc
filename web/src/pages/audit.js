// The audit log: filters (time range, actor, device, action, outcome), older pages, and
// export as CSV or JSON Lines with the same filters (a plain download: the cookie goes along).
// The device filter takes a name or an id prefix, like the CLI; a text that names no current
// device still filters as an id (the events of a removed device keep its id). A terminal's
// events link to its recording; `#/audit/session/SID` (the player's link back) starts with the
// session filter set.

import { API, get, newestOnly } from '../api.js';
import { h, when } from '../dom.js';
import { findDevice } from '../devices_lookup.js';

function millis(value) {
  return value ? String(new Date(value).getTime()) : '';
}

/** Terminal events whose session has a recording: opened (not refused) or closed. */
function recorded(event) {
  return event.session_id && (event.action === 'terminal.close' || (event.action === 'terminal.open' && event.outcome !== 'refused'));
}

export function auditPage(container, filterName, filterValue) {
  const fields = {
    from: h('input', { type: 'datetime-local', id: 'audit-from', 'aria-label': 'From' }),
    to: h('input', { type: 'datetime-local', id: 'audit-to', 'aria-label': 'To' }),
    actor: h('input', { id: 'audit-actor', placeholder: 'actor', size: 12 }),
    device: h('input', { id: 'audit-device', placeholder: 'device name or id', size: 16 }),
    action: h('input', { id: 'audit-action', placeholder: 'action, e.g. terminal.open', size: 18 }),
    session: h('input', { id: 'audit-session', placeholder: 'session id', size: 14, 'aria-label': 'Session', value: filterName === 'session' ? filterValue || '' : '' }),
    outcome: h('select', { id: 'audit-outcome', 'aria-label': 'Outcome' }, ['', 'success', 'failure', 'refused', 'interrupted'].map((o) => h('option', { value: o }, o || 'any outcome'))),
  };
  const body = h('tbody');
  const error = h('p', { class: 'error', id: 'audit-error' });
  const deviceNote = h('p', { class: 'notice', id: 'audit-device-note' });
  /** The device filter as typed, and the id it resolved to. */
  let deviceText = '';
  let deviceId = '';
  const older = h('button', { type: 'button', hidden: true }, 'Older events');
  const csv = h('a', { class: 'button', id: 'audit-export-csv' }, 'Export CSV');
  const jsonl = h('a', { class: 'button', id: 'audit-export-jsonl' }, 'Export JSON Lines');
  let before = null;
  const newest = newestOnly();

  function filters() {
    const query = new URLSearchParams();
    for (const [name, input] of Object.entries(fields)) {
      let value = name === 'from' || name === 'to' ? millis(input.value) : input.value.trim();
      if (name === 'device') value = deviceId;
      if (value) query.set(name, value);
    }
    return query;
  }

  function updateExports() {
    const query = filters();
    query.set('format', 'csv');
    csv.href = `${API}/audit/export?${query}`;
    csv.download = 'tether-audit.csv';
    query.set('format', 'jsonl');
    jsonl.href = `${API}/audit/export?${query}`;
    jsonl.download = 'tether-audit.jsonl';
  }

  function row(event) {
    const object = [event.object_kind, event.object_name || event.object_id].filter(Boolean).join(' ');
    const details = event.details && Object.keys(event.details).length ? JSON.stringify(event.details) : '';
    return h('tr', { dataset: { action: event.action } },
      h('td', {}, when(event.time)),
      h('td', {}, event.actor_name || event.actor_kind, h('div', { class: 'notice' }, event.client_address || '')),
      h('td', {}, event.action),
      h('td', {}, object, recorded(event)
        ? h('div', {}, h('a', { href: `#/play/${encodeURIComponent(event.session_id)}`, dataset: { recording: event.session_id } }, 'Recording'))
        : null),
      h('td', { class: event.outcome === 'success' ? '' : 'error' }, event.outcome),
      h('td', { class: 'notice' }, details));
  }

  async function load(more = false) {
    const query = filters();
    query.set('limit', '100');
    if (more && before !== null) query.set('before', before);
    try {
      const answer = await newest(get(`audit/events?${query}`));
      if (!answer) return;
      const page = answer.value;
      error.textContent = '';
      const rows = page.events.map(row);
      if (more) body.append(...rows); else body.replaceChildren(...rows);
      before = page.next_before ?? null;
      older.hidden = before === null;
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  /** Resolves the device filter (a name, an id or an id prefix) to the id the hub filters by. */
  async function resolveDevice() {
    const text = fields.device.value.trim();
    if (text === deviceText) return true;
    deviceText = text;
    deviceId = '';
    deviceNote.textContent = '';
    if (!text) return true;
    try {
      const found = await findDevice(text);
      if (found.device) {
        deviceId = found.device.id;
        deviceNote.textContent = found.device.id === text ? '' : `Device ${found.device.name} (${found.device.id}).`;
        return true;
      }
      if (/ambiguous/.test(found.error)) {
        error.textContent = found.error;
        body.replaceChildren();
        return false;
      }
      deviceId = text;
      deviceNote.textContent = `${found.error} Filtering by it as a device id (a removed device's events keep its id).`;
      return true;
    } catch (failure) {
      deviceText = '';
      error.textContent = failure.message;
      return false;
    }
  }

  async function refilter() {
    if (!(await resolveDevice())) return;
    updateExports();
    load();
  }

  for (const input of Object.values(fields)) input.addEventListener('change', refilter);
  older.addEventListener('click', () => load(true));
  updateExports();
  container.append(h('h1', {}, 'Audit log'),
    h('div', { class: 'toolbar' }, 'From', fields.from, 'to', fields.to, fields.actor, fields.device, fields.action, fields.session, fields.outcome,
      h('button', { type: 'button', onclick: () => load() }, 'Refresh'), csv, jsonl),
    deviceNote, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'audit' }, h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Object', 'Outcome', 'Details'].map((t) => h('th', {}, t)))), body)),
    h('div', { class: 'pager' }, older));
  load();
}
