// Active sessions (#/sessions): the terminals running now (who, on which device, since when,
// a shell or a command), refreshed by itself every few seconds. The hub lists what the viewer
// may see (an auditor everyone's, others their own); whoever may view recordings gets a Watch
// button to the live, read-only view (the terminal's user is told they are watched).

import { get, may } from '../api.js';
import { ago, h, when } from '../dom.js';

const EVERY_MS = 5000;
const HEADINGS = ['User', 'Device', 'Since', 'Kind', ''];

export function sessionsPage(container) {
  const body = h('tbody');
  const error = h('p', { class: 'error', id: 'sessions-error', role: 'alert' });
  const status = h('p', { class: 'notice', id: 'sessions-status' }, 'Loading…');
  const watcher = may('view_recordings');

  function row(session) {
    const kind = session.command ? 'command' : 'terminal';
    return h('tr', { dataset: { sid: session.sid, user: session.user_name, device: session.device_name, kind } },
      h('td', {}, session.user_name),
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(session.device_id)}` }, session.device_name || session.device_id)),
      h('td', { title: when(session.started_at) }, `${when(session.started_at)} (${ago(session.started_at)})`),
      h('td', {}, kind === 'terminal' ? 'terminal' : ['command ', h('code', {}, session.command)]),
      h('td', {}, watcher
        ? h('a', { class: 'button small', href: `#/watch/${encodeURIComponent(session.sid)}`, 'aria-label': `Watch ${session.user_name} on ${session.device_name}` }, 'Watch')
        : null));
  }

  async function load() {
    try {
      const { sessions } = await get('sessions?limit=1000');
      const live = sessions.filter((session) => session.live);
      body.replaceChildren(...live.map(row));
      if (!live.length) body.append(h('tr', {}, h('td', { colspan: HEADINGS.length, class: 'notice' }, 'No active sessions.')));
      status.textContent = `${live.length} active · updated ${new Date().toLocaleTimeString()}`;
      error.textContent = '';
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  container.append(h('h1', {}, 'Active sessions'),
    h('p', { class: 'notice' }, 'Terminals and commands running now; the list refreshes by itself. File transfers and port forwards are not listed.'),
    status, error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'sessions' },
      h('thead', {}, h('tr', {}, HEADINGS.map((t) => h('th', {}, t || h('span', { class: 'visually-hidden' }, 'Actions'))))), body)));
  load();
  const timer = setInterval(load, EVERY_MS);
  return () => clearInterval(timer);
}
