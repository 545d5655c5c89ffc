// The session protocol's message in the browser: a msgpack map {hdr: {proto, typ, sid, props},
// body} (see docs/protocol.md), and the few shell and control messages a terminal needs.

import { decode, encode } from '@msgpack/msgpack';

export const SHELL = 1;
export const CONTROL = 0xffff;
const STATUS_ERROR = 2;
const STATUS_CONTROL = 3;

export function envelope(proto, typ, sid, props, body) {
  const hdr = { proto, typ };
  if (sid) hdr.sid = sid;
  if (props && Object.keys(props).length) hdr.props = props;
  const message = { hdr };
  if (body && body.length) message.body = body;
  return encode(message);
}

/** Decodes one frame; null when it is not a protocol message. */
export function parse(bytes) {
  try {
    const message = decode(new Uint8Array(bytes));
    if (!message || typeof message !== 'object' || !message.hdr) return null;
    const hdr = message.hdr;
    let body = message.body;
    if (typeof body === 'string') body = new TextEncoder().encode(body);
    if (!(body instanceof Uint8Array)) body = new Uint8Array();
    return { proto: hdr.proto, typ: hdr.typ || '', sid: hdr.sid || '', props: hdr.props || {}, body };
  } catch {
    return null;
  }
}

const text = (bytes) => new TextDecoder().decode(bytes).trim();

/** Control `error` code of a device leg that dropped under a resumable terminal. */
const RECONNECTING = 1100;

export const shellNew = (sid, width, height) =>
  envelope(SHELL, 'new', sid, { terminal_width: width, terminal_height: height });
export const shellData = (sid, bytes) => envelope(SHELL, 'shell', sid, null, bytes);
export const shellResize = (sid, width, height) =>
  envelope(SHELL, 'resize', sid, { terminal_width: width, terminal_height: height });
export const shellStop = (sid) => envelope(SHELL, 'stop', sid);

/**
 * What an inbound message means to the terminal:
 * {kind: 'accepted'|'started'|'refused'|'output'|'ended'|'notice'|'watching'|'closed'|'reply'|'ignore'}.
 */
export function interpret(message) {
  if (!message) return { kind: 'ignore' };
  if (message.proto === CONTROL) {
    switch (message.typ) {
      case 'accept': return { kind: 'accepted' };
      case 'ping': return { kind: 'reply', frame: envelope(CONTROL, 'pong', message.sid) };
      case 'close': return { kind: 'closed', text: 'the hub closed the session' };
      case 'error': {
        let body = {};
        try { body = decode(message.body) || {}; } catch { /* keep empty */ }
        const err = body.err || 'error';
        if (body.close) return { kind: 'closed', text: err };
        // Code 1100: the device's leg dropped; the hub waits for it (not an error: a state).
        return body.code === RECONNECTING ? { kind: 'reconnecting', text: err } : { kind: 'notice', text: err };
      }
      case 'watching': {
        // Tether's: someone started (or stopped) watching this terminal live.
        let body = {};
        try { body = decode(message.body) || {}; } catch { /* keep empty */ }
        return typeof body.user === 'string' ? { kind: 'watching', user: body.user, watching: body.watching === true } : { kind: 'ignore' };
      }
      // A control message this page does not know (a newer hub's): ignored.
      default: return { kind: 'ignore' };
    }
  }
  if (message.proto !== SHELL) return { kind: 'ignore' };
  switch (message.typ) {
    case 'new':
      return message.props.status === STATUS_ERROR
        ? { kind: 'refused', text: text(message.body) || 'the device refused the shell' }
        : { kind: 'started' };
    case 'shell': return { kind: 'output', data: message.body, offset: message.props.offset };
    case 'stop': return { kind: 'ended', text: text(message.body) };
    case 'ping':
      return { kind: 'reply', frame: envelope(SHELL, 'pong', message.sid, { status: STATUS_CONTROL }) };
    default: return { kind: 'ignore' };
  }
}
