// Recorded terminal sessions (optionally of one device): play finished ones, watch live ones.

import { get } from '../api.js';
import { h, when } from '../dom.js';

function duration(session) {
  if (!session.ended_at) return 'running';
  const scale = session.started_at < 1e12 ? 1 : 1000;
  const seconds = Math.round((session.ended_at - session.started_at) / scale);
  return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

export function recordingsPage(container, device) {
  const body = h('tbody');
  const error = h('p', { class: 'error' });
  async function load() {
    const query = new URLSearchParams({ limit: '200' });
    if (device) query.set('device', device);
    try {
      const list = await get(`sessions?${query}`);
      body.replaceChildren(...list.sessions.map((session) => h('tr', { dataset: { sid: session.sid } },
        h('td', {}, when(session.started_at)),
        h('td', {}, session.user_name || session.user_id),
        h('td', {}, session.device_name || session.device_id),
        h('td', {}, session.command || 'shell'),
        h('td', {}, duration(session)),
        h('td', {}, `${session.bytes_out ?? 0} B`),
        h('td', {}, session.live
          ? h('a', { class: 'button small', href: `#/watch/${session.sid}`, dataset: { watch: session.sid } }, 'Watch live')
          : h('a', { class: 'button small', href: `#/play/${session.sid}`, dataset: { play: session.sid } }, 'Play')))));
      if (!list.sessions.length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'notice' }, 'No recorded sessions.')));
      error.textContent = '';
    } catch (failure) {
      error.textContent = failure.message;
    }
  }
  container.append(h('h1', {}, device ? 'Recorded sessions of a device' : 'Recorded sessions'),
    h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: load }, 'Refresh')),
    error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'recordings' }, h('thead', {}, h('tr', {}, ['Started', 'User', 'Device', 'Command', 'Duration', 'Output', ''].map((t) => h('th', {}, t)))), body)));
  load();
}
