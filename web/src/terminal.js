// A browser terminal on a device: xterm.js over the hub's user-leg WebSocket (the cookie
// authenticates it; the hub checks Origin). The fit addon makes the remote PTY follow the
// window; selecting copies, Ctrl+Shift+C/V copy and paste.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { API, get, restoreSession, sessionExpired, websocketUrl } from './api.js';
import { interpret, parse, shellData, shellNew, shellResize, shellStop } from './envelope.js';

export function createTerminal(element, options = {}) {
  const terminal = new Terminal({
    cursorBlink: true,
    fontSize: 14,
    fontFamily: 'ui-monospace, Menlo, Consolas, monospace',
    scrollback: 5000,
    ...options,
  });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open(element);
  return { terminal, fit };
}

/**
 * Connects `terminal` to device `device` ({id, name}); `report(state, text)` hears
 * 'connecting' | 'connected' | 'ended' | 'failed'. Returns {disconnect, fit}.
 */
export function connectTerminal(device, terminal, fit, report) {
  let sid = '';
  let started = false;
  let over = false;
  const encoder = new TextEncoder();
  const socket = new WebSocket(websocketUrl(`${API}/deviceconnect/devices/${encodeURIComponent(device.id)}/connect`));
  socket.binaryType = 'arraybuffer';
  report('connecting', `Connecting to ${device.name}…`);

  const finish = (state, text) => {
    if (over) return;
    over = true;
    report(state, text);
    if (socket.readyState === WebSocket.OPEN) socket.close();
  };

  const send = (frame) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(frame);
  };

  const input = terminal.onData((data) => { if (started) send(shellData(sid, encoder.encode(data))); });
  const binary = terminal.onBinary((data) => {
    if (started) send(shellData(sid, Uint8Array.from(data, (c) => c.charCodeAt(0))));
  });
  const resize = terminal.onResize(({ cols, rows }) => { if (started) send(shellResize(sid, cols, rows)); });

  socket.addEventListener('message', (event) => {
    if (typeof event.data === 'string') return;
    const message = parse(event.data);
    const meaning = interpret(message);
    switch (meaning.kind) {
      case 'accepted':
        sid = message.sid;
        fit.fit();
        send(shellNew(sid, terminal.cols, terminal.rows));
        break;
      case 'started':
        started = true;
        report('connected', `Connected to ${device.name}`);
        terminal.focus();
        break;
      case 'refused':
        finish('failed', `The device refused the shell: ${meaning.text}`);
        break;
      case 'output':
        terminal.write(meaning.data);
        break;
      case 'ended':
        finish('ended', meaning.text ? `The shell ended: ${meaning.text}` : 'The shell ended.');
        break;
      case 'notice':
        terminal.write(`\r\n\x1b[33m[${meaning.text}]\x1b[0m\r\n`);
        break;
      case 'closed':
        finish(started ? 'ended' : 'failed', `Session ended: ${meaning.text}`);
        break;
      case 'reply':
        send(meaning.frame);
        break;
      default:
        break;
    }
  });

  socket.addEventListener('close', async (event) => {
    if (over) return;
    if (started) {
      finish('ended', event.reason ? `Connection closed: ${event.reason}` : 'Connection to the hub lost.');
      return;
    }
    // A refused upgrade tells the browser nothing: ask the hub why.
    if (!(await restoreSession())) {
      over = true;
      sessionExpired();
      return;
    }
    let why = 'Could not open a session on the device.';
    try {
      const list = await get(`devices?search=${encodeURIComponent(device.id)}`);
      const found = list.devices.find((d) => d.id === device.id);
      if (!found) why = 'The device no longer exists.';
      else if (found.status !== 'accepted') why = `The device is ${found.status}.`;
      else if (!found.online) why = `${device.name} is offline.`;
    } catch { /* keep the generic reason */ }
    finish('failed', why);
  });

  return {
    disconnect() {
      if (started) send(shellStop(sid));
      finish('ended', 'Disconnected.');
      input.dispose();
      binary.dispose();
      resize.dispose();
    },
    dispose() {
      input.dispose();
      binary.dispose();
      resize.dispose();
    },
  };
}

/** Copy on selection, Ctrl+Shift+C / Ctrl+Shift+V, as terminal users expect. */
export function enableClipboard(terminal) {
  terminal.onSelectionChange(() => {
    const selection = terminal.getSelection();
    if (selection && navigator.clipboard) navigator.clipboard.writeText(selection).catch(() => {});
  });
  terminal.attachCustomKeyEventHandler((event) => {
    if (event.type !== 'keydown' || !event.ctrlKey || !event.shiftKey) return true;
    if (event.code === 'KeyC') {
      const selection = terminal.getSelection();
      if (selection) navigator.clipboard.writeText(selection).catch(() => {});
      return false;
    }
    // The browser's own paste follows (xterm.js handles it); only keep ^V from the shell.
    if (event.code === 'KeyV') return false;
    return true;
  });
}
