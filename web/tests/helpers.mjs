// Helpers of the browser test (ui.e2e.mjs): reading xterm.js terminals (visible rows, the whole
// buffer, whether underscores are drawn), TOTP codes, and WebSocket upgrades sent from Node.

import { createHmac } from 'node:crypto';
import https from 'node:https';

/** Give-up limit of one wait (a loaded 2-core machine). */
export const LIMIT = 30000;

/** Every line of the xterm.js buffer (scrollback included) of the terminal in `selector`. */
export const bufferLines = (selector, on) => on.evaluate((sel) => {
  const { terminal } = document.querySelector(sel);
  if (!terminal) throw new Error(`${sel} has no terminal`);
  const buffer = terminal.buffer.active;
  const lines = [];
  for (let index = 0; index < buffer.length; index += 1) {
    const line = buffer.getLine(index);
    const text = line.translateToString(true);
    if (line.isWrapped && lines.length) lines[lines.length - 1] += text;
    else lines.push(text);
  }
  return lines;
}, selector);

/** A blank page per browser context that decodes screenshots (no image library in Node). */
const decoders = new WeakMap();
/** How many pixels of a PNG are bright (the terminal draws light text on black). */
async function brightPixels(context, png) {
  if (!decoders.has(context)) decoders.set(context, await context.newPage());
  return decoders.get(context).evaluate(async (base64) => {
    const blob = await (await fetch(`data:image/png;base64,${base64}`)).blob();
    const bitmap = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const drawing = canvas.getContext('2d');
    drawing.drawImage(bitmap, 0, 0);
    const { data } = drawing.getImageData(0, 0, bitmap.width, bitmap.height);
    let bright = 0;
    for (let at = 0; at < data.length; at += 4) if (data[at] + data[at + 1] + data[at + 2] > 300) bright += 1;
    return bright;
  }, png.toString('base64'));
}

/**
 * Checks that the underscores of a row reading exactly `a_b_c` are drawn in the terminal in
 * `selector`: the screenshot of each `_` cell, cut to the row, has bright pixels.
 */
export async function assertUnderscoresDrawn(selector, on) {
  const cells = await on.evaluate((sel) => {
    const rows = document.querySelector(`${sel} .xterm-rows`);
    const row = [...rows.children].find((candidate) => candidate.textContent.replace(/\u00a0/g, ' ').trim() === 'a_b_c');
    if (!row) return null;
    const box = row.getBoundingClientRect();
    const walker = document.createTreeWalker(row, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.data.indexOf('a_b_c');
      if (at < 0) continue;
      return [1, 3].map((offset) => {
        const range = document.createRange();
        range.setStart(node, at + offset);
        range.setEnd(node, at + offset + 1);
        const cell = range.getBoundingClientRect();
        return { x: cell.left, y: box.top, width: cell.width, height: box.height };
      });
    }
    return null;
  }, selector);
  if (!cells) throw new Error(`no row reads a_b_c in ${selector}`);
  for (const clip of cells) {
    const bright = await brightPixels(on.context(), await on.screenshot({ clip, type: 'png' }));
    if (bright === 0) throw new Error(`the underscore at x=${Math.round(clip.x)} of ${selector} is not drawn (rows ${clip.height} px high)`);
  }
}

/** The visible rows of the xterm.js terminal in `selector`, as text lines. */
export const screen = (selector, on) => on.evaluate((sel) => {
  const rows = document.querySelector(`${sel} .xterm-rows`);
  return rows ? Array.from(rows.children, (row) => row.textContent.replace(/\u00a0/g, ' ').trimEnd()).join('\n') : '';
}, selector);

export async function waitScreen(selector, pattern, what, on, limit = LIMIT) {
  const deadline = Date.now() + limit;
  let text = '';
  while (Date.now() < deadline) {
    text = await screen(selector, on);
    const match = text.match(pattern);
    if (match) return match;
    await on.waitForTimeout(100);
  }
  throw new Error(`${what}: ${pattern} never appeared; the screen was:\n${text}`);
}

/** RFC 6238 TOTP (HMAC-SHA1, 30 s steps, 6 digits) of a base32 secret, at `seconds`. */
export function totp(secret, seconds) {
  let bits = '';
  for (const char of secret.replace(/=+$/, '').toUpperCase()) {
    bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(char).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

/** A WebSocket upgrade sent from Node with the browser's cookie and a chosen Origin. */
export function upgradeStatus(url, path, origin, cookie) {
  return new Promise((resolve, reject) => {
    const request = https.request(`${url}${path}`, {
      rejectUnauthorized: false,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', Origin: origin, Cookie: cookie,
      },
    });
    request.on('response', (response) => { response.resume(); resolve(response.statusCode); });
    request.on('upgrade', (response, socket) => { socket.destroy(); resolve(response.statusCode); });
    request.on('error', reject);
    request.end();
  });
}
