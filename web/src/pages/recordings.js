// Recorded terminal sessions: filters by device (name or id), user and start date, and a search
// in the recorded output (the hub reads the newest recordings the filters keep, bounded, and
// says how far it got). Play finished ones, watch live ones. `#/recordings/DEVICE` starts with
// the device filter set.

import { get, newestOnly } from '../api.js';
import { h, spoken, when } from '../dom.js';

function duration(session) {
  if (!session.ended_at) return 'running';
  const scale = session.started_at < 1e12 ? 1000 : 1;
  return spoken((session.ended_at - session.started_at) * scale);
}

function millis(value) {
  return value ? String(new Date(value).getTime()) : '';
}

function mebibytes(count) {
  return `${(count / (1024 * 1024)).toFixed(count < 1024 * 1024 ? 2 : 0)} MiB`;
}

/** What the search read, in words. */
function searchSummary(search, found) {
  const read = `Searched the output of ${search.scanned} recording${search.scanned === 1 ? '' : 's'} (${mebibytes(search.bytes_scanned)}): ${found} found.`;
  if (search.complete) return `${read} Every recording the filters keep was searched.`;
  return `${read} The search stops after ${search.scan_limit} recordings or ${mebibytes(search.byte_limit)}: older recordings were not searched; narrow the filters (device, user, dates) to search them.`;
}

export function recordingsPage(container, device) {
  const fields = {
    device: h('input', { id: 'recordings-device', placeholder: 'device name or id', size: 16, value: device || '', 'aria-label': 'Device' }),
    user: h('input', { id: 'recordings-user', placeholder: 'user', size: 12, 'aria-label': 'User' }),
    from: h('input', { type: 'datetime-local', id: 'recordings-from', 'aria-label': 'Started from' }),
    to: h('input', { type: 'datetime-local', id: 'recordings-to', 'aria-label': 'Started before' }),
    text: h('input', { type: 'search', id: 'recordings-text', placeholder: 'text in the output', size: 18, maxlength: 200, 'aria-label': 'Text in the output' }),
  };
  const body = h('tbody');
  const error = h('p', { class: 'error', id: 'recordings-error' });
  const summary = h('p', { class: 'notice', id: 'recordings-search', 'aria-live': 'polite' });
  const newest = newestOnly();
  const table = h('table', { id: 'recordings' });
  table.append(h('thead', {}, h('tr', {}, ['Started', 'User', 'Device', 'Command', 'Duration', 'Output', '']
    .map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'visually-hidden' }, 'Actions'))))), body);
  let loads = 0;

  function query() {
    const parameters = new URLSearchParams({ limit: '200' });
    for (const [name, input] of Object.entries(fields)) {
      const value = name === 'from' || name === 'to' ? millis(input.value) : input.value.trim();
      if (value) parameters.set(name, value);
    }
    return parameters;
  }

  function row(session) {
    return h('tr', { dataset: { sid: session.sid } },
      h('td', {}, when(session.started_at)),
      h('td', {}, session.user_name || session.user_id),
      h('td', {}, session.device_name || session.device_id),
      h('td', {}, session.command || 'shell',
        session.excerpt ? h('div', { class: 'notice excerpt', dataset: { excerpt: session.sid } }, `… ${session.excerpt}`) : null),
      h('td', {}, duration(session)),
      h('td', {}, `${session.bytes_out ?? 0} B`),
      h('td', {}, session.live
        ? h('a', { class: 'button small', href: `#/watch/${session.sid}`, dataset: { watch: session.sid } }, 'Watch live')
        : h('a', { class: 'button small', href: `#/play/${session.sid}`, dataset: { play: session.sid } }, 'Play')));
  }

  async function load() {
    const parameters = query();
    summary.textContent = parameters.has('text') ? 'Searching the recorded output…' : '';
    try {
      const answer = await newest(get(`sessions?${parameters}`));
      if (!answer) return;
      const list = answer.value;
      body.replaceChildren(...list.sessions.map(row));
      if (!list.sessions.length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'notice' }, 'No recorded sessions.')));
      summary.textContent = list.search ? searchSummary(list.search, list.sessions.length) : '';
      summary.dataset.complete = list.search ? String(list.search.complete) : '';
      error.textContent = '';
    } catch (failure) {
      summary.textContent = '';
      error.textContent = failure.message;
    }
    // For tests: an answer (or its error) is shown.
    loads += 1;
    table.dataset.loads = String(loads);
  }

  const form = h('form', { class: 'toolbar', role: 'search', id: 'recordings-filters', 'aria-label': 'Filter recordings' },
    fields.device, fields.user, 'From', fields.from, 'to', fields.to, fields.text,
    h('button', { type: 'submit', class: 'primary' }, 'Search'),
    h('button', { type: 'button', onclick: load }, 'Refresh'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load();
  });
  container.append(h('h1', {}, 'Recorded sessions'), form, summary, error,
    h('div', { class: 'table-scroll' }, table));
  load();
}
