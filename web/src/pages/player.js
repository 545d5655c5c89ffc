// A player for a recorded session over the hub's asciicast v2 endpoint, drawn by xterm.js:
// play, pause, speed, and seek (a seek replays the output up to that moment, off screen).

import { get } from '../api.js';
import { h } from '../dom.js';
import { createTerminal } from '../terminal.js';

/** asciicast v2 text → {width, height, events: [[seconds, kind, data]], duration}. */
export function parseCast(text) {
  const lines = text.split('\n').filter((line) => line.trim());
  const header = JSON.parse(lines[0] || '{}');
  const events = [];
  for (const line of lines.slice(1)) {
    try {
      const event = JSON.parse(line);
      if (Array.isArray(event) && event.length >= 3) events.push(event);
    } catch { /* skip a damaged line */ }
  }
  const duration = events.length ? events[events.length - 1][0] : 0;
  return { width: header.width || 80, height: header.height || 24, events, duration };
}

const clock = (seconds) => `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, '0')}`;

export function playerPage(container, sid) {
  const box = h('div', { class: 'player-box', id: 'player' });
  const play = h('button', { type: 'button', id: 'play', class: 'primary' }, 'Play');
  const speed = h('select', { id: 'speed', 'aria-label': 'Speed' }, ['0.5', '1', '2', '4', '8'].map((s) => h('option', { value: s, selected: s === '1' }, `${s}×`)));
  const seek = h('input', { type: 'range', id: 'seek', 'aria-label': 'Position', min: 0, max: 1000, value: 0 });
  const time = h('span', { id: 'time', class: 'notice' }, '0:00');
  const error = h('p', { class: 'error' });
  container.append(h('h1', {}, 'Recorded session'), h('p', { class: 'notice' }, sid), error,
    h('div', { class: 'controls' }, play, speed, seek, time), box);

  let cast = null;
  let terminal = null;
  let index = 0;
  let position = 0;
  let playing = false;
  let last = 0;
  let frame = 0;

  const apply = (event) => {
    const [, kind, data] = event;
    if (kind === 'o') terminal.write(data);
    else if (kind === 'r') {
      const [width, height] = String(data).split('x').map(Number);
      if (width && height) terminal.resize(width, height);
    }
  };

  function show() {
    time.textContent = `${clock(position)} / ${clock(cast.duration)}`;
    seek.value = cast.duration ? Math.round((position / cast.duration) * 1000) : 0;
  }

  function tick(now) {
    if (!playing) return;
    position += ((now - last) / 1000) * Number(speed.value);
    last = now;
    while (index < cast.events.length && cast.events[index][0] <= position) apply(cast.events[index++]);
    if (index >= cast.events.length) {
      position = cast.duration;
      pause();
    }
    show();
    if (playing) frame = requestAnimationFrame(tick);
  }

  function start() {
    if (index >= cast.events.length) jump(0);
    playing = true;
    play.textContent = 'Pause';
    last = performance.now();
    frame = requestAnimationFrame(tick);
  }

  function pause() {
    playing = false;
    play.textContent = 'Play';
    cancelAnimationFrame(frame);
  }

  function jump(target) {
    terminal.reset();
    terminal.resize(cast.width, cast.height);
    index = 0;
    position = target;
    let output = '';
    while (index < cast.events.length && cast.events[index][0] <= target) {
      const event = cast.events[index++];
      if (event[1] === 'o') output += event[2];
      else { terminal.write(output); output = ''; apply(event); }
    }
    terminal.write(output);
    show();
  }

  play.addEventListener('click', () => (playing ? pause() : start()));
  seek.addEventListener('input', () => jump((Number(seek.value) / 1000) * cast.duration));

  get(`sessions/${encodeURIComponent(sid)}/asciicast`).then((text) => {
    cast = parseCast(typeof text === 'string' ? text : JSON.stringify(text));
    ({ terminal } = createTerminal(box, { cols: cast.width, rows: cast.height, cursorBlink: false, disableStdin: true }));
    show();
    start();
  }).catch((failure) => { error.textContent = failure.message; });

  return () => {
    pause();
    if (terminal) terminal.dispose();
  };
}
