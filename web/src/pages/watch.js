// A live, read-only view of a running session (the hub's watch WebSocket): the size, the
// current screen, then output and resizes as they happen.

import { API, websocketUrl } from '../api.js';
import { h } from '../dom.js';
import { createTerminal } from '../terminal.js';

export function watchPage(container, sid) {
  const box = h('div', { class: 'player-box', id: 'watch' });
  const status = h('p', { class: 'notice', id: 'watch-status' }, 'Connecting…');
  container.append(h('h1', {}, 'Live session (read-only)'), h('p', { class: 'notice' }, sid), status, box);
  const { terminal } = createTerminal(box, { disableStdin: true, cursorBlink: false });
  const socket = new WebSocket(websocketUrl(`${API}/sessions/${encodeURIComponent(sid)}/watch`));
  socket.binaryType = 'arraybuffer';
  socket.addEventListener('open', () => { status.textContent = 'Watching.'; });
  socket.addEventListener('message', (event) => {
    if (typeof event.data !== 'string') {
      terminal.write(new Uint8Array(event.data));
      return;
    }
    try {
      const message = JSON.parse(event.data);
      if (message.width && message.height) terminal.resize(message.width, message.height);
      if (Array.isArray(message.resize)) terminal.resize(message.resize[0], message.resize[1]);
    } catch { /* ignore */ }
  });
  socket.addEventListener('close', (event) => {
    status.textContent = event.reason ? `Ended: ${event.reason}` : 'The session ended (or could not be watched).';
  });
  return () => {
    socket.close();
    terminal.dispose();
  };
}
