// The audit log: filters (time range, actor, device, action, outcome), older pages, and
// export as CSV or JSON Lines with the same filters (a plain download: the cookie goes along).

import { API, get } from '../api.js';
import { h, when } from '../dom.js';

function millis(value) {
  return value ? String(new Date(value).getTime()) : '';
}

export function auditPage(container) {
  const fields = {
    from: h('input', { type: 'datetime-local', id: 'audit-from' }),
    to: h('input', { type: 'datetime-local', id: 'audit-to' }),
    actor: h('input', { id: 'audit-actor', placeholder: 'actor', size: 12 }),
    device: h('input', { id: 'audit-device', placeholder: 'device', size: 12 }),
    action: h('input', { id: 'audit-action', placeholder: 'action, e.g. terminal.open', size: 18 }),
    outcome: h('select', { id: 'audit-outcome' }, ['', 'success', 'failure', 'refused', 'interrupted'].map((o) => h('option', { value: o }, o || 'any outcome'))),
  };
  const body = h('tbody');
  const error = h('p', { class: 'error' });
  const older = h('button', { type: 'button', hidden: true }, 'Older events');
  const csv = h('a', { class: 'button', id: 'audit-export-csv' }, 'Export CSV');
  const jsonl = h('a', { class: 'button', id: 'audit-export-jsonl' }, 'Export JSON Lines');
  let before = null;

  function filters() {
    const query = new URLSearchParams();
    for (const [name, input] of Object.entries(fields)) {
      const value = name === 'from' || name === 'to' ? millis(input.value) : input.value.trim();
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
      h('td', {}, object),
      h('td', { class: event.outcome === 'success' ? '' : 'error' }, event.outcome),
      h('td', { class: 'notice' }, details));
  }

  async function load(more = false) {
    const query = filters();
    query.set('limit', '100');
    if (more && before !== null) query.set('before', before);
    try {
      const page = await get(`audit/events?${query}`);
      error.textContent = '';
      const rows = page.events.map(row);
      if (more) body.append(...rows); else body.replaceChildren(...rows);
      before = page.next_before ?? null;
      older.hidden = before === null;
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  for (const input of Object.values(fields)) input.addEventListener('change', () => { updateExports(); load(); });
  older.addEventListener('click', () => load(true));
  updateExports();
  container.append(h('h1', {}, 'Audit log'),
    h('div', { class: 'toolbar' }, 'From', fields.from, 'to', fields.to, fields.actor, fields.device, fields.action, fields.outcome,
      h('button', { type: 'button', onclick: () => load() }, 'Refresh'), csv, jsonl),
    error,
    h('table', { id: 'audit' }, h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Object', 'Outcome', 'Details'].map((t) => h('th', {}, t)))), body),
    h('div', { class: 'pager' }, older));
  load();
}
