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

/** How long a lost session keeps trying to re-attach (the agent keeps a shell 5 min by default). */
const REATTACH_FOR_MS = 15 * 60 * 1000;
/** Keys typed while reconnecting, sent once back (more is dropped, with a notice). */
const MAX_PENDING_INPUT = 256;

/**
 * Connects `terminal` to device `device` ({id, name}); `report(state, text)` hears
 * 'connecting' | 'connected' | 'reconnecting' | 'ended' | 'failed'. A session whose connection
 * drops re-attaches by itself (`?attach=SID&offset=N`): the output missed meanwhile is replayed,
 * and what was already shown is not shown twice. Returns {disconnect, dispose}.
 */
export function connectTerminal(device, terminal, fit, report) {
  let sid = '';
  let started = false;
  let over = false;
  let socket = null;
  /** The output offset after the last byte shown: where a re-attach continues. */
  let nextOffset = 0;
  let lostSince = 0;
  let retryDelay = 250;
  const pending = [];
  const encoder = new TextEncoder();
  report('connecting', `Connecting to ${device.name}…`);

  const finish = (state, text) => {
    if (over) return;
    over = true;
    report(state, text);
    if (socket && socket.readyState === WebSocket.OPEN) socket.close();
  };

  const send = (frame) => {
    if (socket && socket.readyState === WebSocket.OPEN && started) socket.send(frame);
    else if (sid && pending.length < MAX_PENDING_INPUT) pending.push(frame);
  };
  const sendNow = (frame) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(frame);
  };

  /** Writes output, skipping what a replay repeats (by its offset). */
  const show = (data, offset) => {
    if (typeof offset !== 'number') {
      terminal.write(data);
      return;
    }
    const end = offset + data.length;
    if (end <= nextOffset) return;
    terminal.write(offset < nextOffset ? data.subarray(nextOffset - offset) : data);
    nextOffset = end;
  };

  const back = () => {
    if (lostSince) report('connected', `Connected to ${device.name} (reconnected)`);
    lostSince = 0;
    retryDelay = 250;
  };

  const input = terminal.onData((data) => { if (sid) send(shellData(sid, encoder.encode(data))); });
  const binary = terminal.onBinary((data) => {
    if (sid) send(shellData(sid, Uint8Array.from(data, (c) => c.charCodeAt(0))));
  });
  const resize = terminal.onResize(({ cols, rows }) => { if (started) send(shellResize(sid, cols, rows)); });

  function open() {
    const path = `${API}/deviceconnect/devices/${encodeURIComponent(device.id)}/connect`;
    const attach = sid ? `?attach=${encodeURIComponent(sid)}&offset=${nextOffset}` : '';
    const resuming = Boolean(sid);
    socket = new WebSocket(websocketUrl(path + attach));
    socket.binaryType = 'arraybuffer';
    let opened = false;
    socket.addEventListener('open', () => { opened = true; });
    socket.addEventListener('message', (event) => {
      if (typeof event.data === 'string') return;
      const message = parse(event.data);
      const meaning = interpret(message);
      switch (meaning.kind) {
        case 'accepted':
          if (resuming) break;
          sid = message.sid;
          fit.fit();
          sendNow(shellNew(sid, terminal.cols, terminal.rows));
          break;
        case 'started':
          started = true;
          if (resuming) {
            back();
            sendNow(shellResize(sid, terminal.cols, terminal.rows));
          } else {
            report('connected', `Connected to ${device.name}`);
          }
          while (pending.length) sendNow(pending.shift());
          terminal.focus();
          break;
        case 'refused':
          finish('failed', resuming ? `The session could not be resumed: ${meaning.text}` : `The device refused the shell: ${meaning.text}`);
          break;
        case 'output':
          if (lostSince && !resuming) back();
          show(meaning.data, meaning.offset);
          break;
        case 'ended':
          finish('ended', meaning.text ? `The shell ended: ${meaning.text}` : 'The shell ended.');
          break;
        case 'reconnecting':
          if (!lostSince) lostSince = Date.now();
          report('reconnecting', `${meaning.text}`);
          break;
        case 'notice':
          terminal.write(`\r\n\x1b[33m[${meaning.text}]\x1b[0m\r\n`);
          break;
        case 'closed':
          finish(started ? 'ended' : 'failed', `Session ended: ${meaning.text}`);
          break;
        case 'reply':
          sendNow(meaning.frame);
          break;
        default:
          break;
      }
    });
    socket.addEventListener('close', (event) => closed(event, opened));
  }

  async function closed(event, opened) {
    if (over) return;
    if (sid && started) {
      // The connection to the hub dropped under a live shell: re-attach, like mosh.
      started = false;
      if (!lostSince) lostSince = Date.now();
      if (Date.now() - lostSince > REATTACH_FOR_MS) {
        finish('ended', 'Connection to the hub lost; gave up reconnecting.');
        return;
      }
      report('reconnecting', 'Connection to the hub lost; reconnecting…');
      retry();
      return;
    }
    if (sid && lostSince && !opened) {
      // A refused re-attach: the session is gone, or the login expired.
      if (!(await restoreSession())) {
        over = true;
        sessionExpired();
        return;
      }
      if (Date.now() - lostSince > REATTACH_FOR_MS) {
        finish('ended', 'Connection to the hub lost; gave up reconnecting.');
        return;
      }
      retry();
      return;
    }
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
  }

  function retry() {
    setTimeout(() => { if (!over) open(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 3000);
  }

  open();

  return {
    disconnect() {
      if (started) sendNow(shellStop(sid));
      finish('ended', 'Disconnected.');
      input.dispose();
      binary.dispose();
      resize.dispose();
    },
    dispose() {
      over = true;
      if (socket && socket.readyState === WebSocket.OPEN) socket.close();
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
