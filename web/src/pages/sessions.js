// Active sessions (#/sessions): every session running now, of every kind — terminals, commands,
// file uploads and downloads (with the path on the device), port forwards (with their TCP/UDP
// targets) — who runs it, on which device, since when; refreshed by itself every few seconds.
// The hub lists what the viewer may see (an auditor everyone's, others their own) from every
// replica. Whoever may view recordings gets a Watch button on recorded terminals and commands:
// the live, read-only view (the terminal's user is told they are watched).

import { get, may } from '../api.js';
import { ago, h, when } from '../dom.js';

const EVERY_MS = 5000;
const HEADINGS = ['User', 'Device', 'Since', 'Kind', ''];
const KINDS = {
  terminal: 'terminal',
  command: 'command',
  file_upload: 'file upload',
  file_download: 'file download',
  port_forward: 'port forward',
};

/** Since when: the time of day for today's sessions (the full date in the tooltip), the date
 * and time for older ones, and how long ago. */
function since(started) {
  const date = new Date(started);
  const today = date.toDateString() === new Date().toDateString();
  const text = today ? date.toLocaleTimeString() : when(started);
  return h('td', { title: when(started) }, h('time', { datetime: date.toISOString() }, text), ` (${ago(started)})`);
}

/** The Kind cell: what it is, and the command, path or targets in code. */
function kindCell(session) {
  const label = KINDS[session.kind] || session.kind;
  return session.detail ? [`${label} `, h('code', {}, session.detail)] : label;
}

export function sessionsPage(container) {
  const body = h('tbody');
  const error = h('p', { class: 'error', id: 'sessions-error', role: 'alert' });
  const status = h('p', { class: 'notice', id: 'sessions-status' }, 'Loading…');
  const watcher = may('view_recordings');

  function row(session) {
    const who = session.user_name || session.user_id;
    const where = session.device_name || session.device_id;
    const watch = watcher && session.watch_sid
      ? h('a', { class: 'button small', href: `#/watch/${encodeURIComponent(session.watch_sid)}`, 'aria-label': `Watch ${who} on ${where}` }, 'Watch')
      : null;
    return h('tr', { dataset: { sid: session.sid, user: session.user_name, device: session.device_name, kind: session.kind } },
      h('td', {}, who),
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(session.device_id)}` }, where)),
      since(session.started_at),
      h('td', { class: 'session-kind' }, kindCell(session)),
      h('td', {}, watch));
  }

  async function load() {
    try {
      const { sessions, truncated } = await get('sessions/active');
      body.replaceChildren(...sessions.map(row));
      if (!sessions.length) body.append(h('tr', {}, h('td', { colspan: HEADINGS.length, class: 'notice' }, 'No active sessions.')));
      const more = truncated ? ' (the oldest 1000 shown)' : '';
      status.textContent = `${sessions.length} active${more} · updated ${new Date().toLocaleTimeString()}`;
      error.textContent = '';
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  container.append(h('h1', {}, 'Active sessions'),
    h('p', { class: 'notice' }, 'Terminals, commands, file transfers and port forwards running now, on every hub replica; the list refreshes by itself.'),
    status, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'sessions' },
      h('thead', {}, h('tr', {}, HEADINGS.map((t) => h('th', {}, t || h('span', { class: 'visually-hidden' }, 'Actions'))))), body)));
  load();
  const timer = setInterval(load, EVERY_MS);
  return () => clearInterval(timer);
}
