// A player for a recorded session, drawn by xterm.js: play, pause, speed, skipping idle gaps,
// and a seek bar over the recording's keyframes. It never downloads the whole recording: it
// asks the hub where the keyframes are (`GET /sessions/SID/segments`, which also names the
// user, device, date and duration shown above the player), then reads the recording a window
// at a time (`GET /sessions/SID/recording?from_ms=&to_ms=`, JSON Lines): the hub starts each
// window from the keyframe at or before `from_ms`, and its first record is the screen then.

import { API, hubFetch, get } from '../api.js';
import { h, spoken, when } from '../dom.js';
import { createTerminal } from '../terminal.js';

/** The shortest window read ahead, in ms: a window ends at a keyframe at least this far on.
 *  Each window is a viewing in the audit log (`recording.view`): not too many per playback. */
const WINDOW_MS = 60000;

/** m:ss, or h:mm:ss from an hour on. */
const clock = (ms) => {
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  const ss = String(seconds % 60).padStart(2, '0');
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, '0')}:${ss}` : `${minutes}:${ss}`;
};

function bytes(base64) {
  if (!base64) return new Uint8Array();
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) out[i] = text.charCodeAt(i);
  return out;
}

/** JSON Lines of a recording window → its records (the header line dropped). */
export function parseWindow(text) {
  const records = [];
  for (const line of text.split('\n').slice(1)) {
    if (!line.trim()) continue;
    try {
      const record = JSON.parse(line);
      if (typeof record.t === 'number' && record.k) records.push(record);
    } catch { /* skip a damaged line */ }
  }
  return records;
}

export function playerPage(container, sid) {
  const box = h('div', { class: 'player-box', id: 'player' });
  const play = h('button', { type: 'button', id: 'play', class: 'primary' }, 'Play');
  const speed = h('select', { id: 'speed', 'aria-label': 'Speed' }, ['0.5', '1', '2', '4', '8'].map((s) => h('option', { value: s, selected: s === '1' }, `${s}×`)));
  const keyframes = h('datalist', { id: 'player-keyframes' });
  const seek = h('input', { type: 'range', id: 'seek', 'aria-label': 'Position', min: 0, max: 1000, value: 0, list: 'player-keyframes' });
  const time = h('span', { id: 'time', class: 'notice', 'aria-live': 'off' }, '0:00');
  const skip = h('input', { type: 'checkbox', id: 'skip-idle', checked: true });
  const limit = h('input', { type: 'number', id: 'idle-limit', 'aria-label': 'Longest idle gap kept, in seconds', min: 0.5, max: 600, step: 0.5, value: 2, size: 4 });
  const skipped = h('p', { class: 'notice', id: 'player-skipped', 'aria-live': 'polite' });
  const error = h('p', { class: 'error', id: 'player-error' });
  const field = (id) => h('dd', { id });
  const meta = {
    user: field('player-user'),
    device: field('player-device'),
    date: field('player-date'),
    duration: field('player-duration'),
    command: field('player-command'),
  };
  const links = h('p', { class: 'toolbar' },
    h('a', { class: 'button', id: 'player-audit', href: `#/audit/session/${encodeURIComponent(sid)}` }, 'Audit events of this session'),
    h('a', { class: 'button', id: 'player-export', href: `${API}/sessions/${encodeURIComponent(sid)}/asciicast`, download: `${sid}.cast` }, 'Download (asciicast)'));
  container.append(h('h1', {}, 'Recorded session'), h('p', { class: 'notice' }, sid),
    h('dl', { class: 'facts', id: 'player-meta' },
      h('dt', {}, 'User'), meta.user, h('dt', {}, 'Device'), meta.device, h('dt', {}, 'Started'), meta.date,
      h('dt', {}, 'Duration'), meta.duration, h('dt', {}, 'Command'), meta.command),
    links, error,
    h('div', { class: 'controls' }, play, speed, seek, keyframes, time),
    h('div', { class: 'controls' }, h('label', {}, skip, ' Skip idle gaps longer than '), limit, h('span', {}, ' s'), skipped),
    box);

  let terminal = null;
  let duration = 0;
  let starts = [0];
  /** The window loaded: its records, from `from` up to `to` (null: to the end). */
  let records = [];
  let windowTo = null;
  let index = 0;
  let position = 0;
  let playing = false;
  let last = 0;
  let frame = 0;
  let loading = null;
  let skippedMs = 0;
  /** Bumped by each seek: a window asked for before it is dropped. */
  let generation = 0;

  /** The end of a window starting at `from`: the first keyframe WINDOW_MS or more after it. */
  const windowEnd = (from) => starts.find((start) => start >= from + WINDOW_MS) ?? null;

  async function fetchWindow(from) {
    const to = windowEnd(from);
    const query = new URLSearchParams({ from_ms: String(Math.floor(from)) });
    if (to !== null) query.set('to_ms', String(to));
    const response = await hubFetch(`${API}/sessions/${encodeURIComponent(sid)}/recording?${query}`);
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch { /* not JSON */ }
      throw new Error(message);
    }
    return { records: parseWindow(await response.text()), to };
  }

  const apply = (record) => {
    if (record.k === 'o') terminal.write(bytes(record.d));
    else if (record.k === 'r' && record.w && record.h) terminal.resize(record.w, record.h);
    else if (record.k === 'screen') {
      terminal.reset();
      if (record.w && record.h) terminal.resize(record.w, record.h);
      terminal.write(bytes(record.d));
    }
  };

  function show() {
    time.textContent = `${clock(position)} / ${clock(duration)}`;
    seek.value = duration ? Math.round((position / duration) * 1000) : 0;
    seek.setAttribute('aria-valuetext', `${clock(position)} of ${clock(duration)}`);
    skipped.textContent = skippedMs >= 1000 ? `Skipped ${spoken(skippedMs)} of idle time.` : '';
    skipped.dataset.skippedMs = String(Math.round(skippedMs));
  }

  /** Loads the window after the current one; its first record (the screen) is already drawn. */
  function loadNext() {
    if (loading || windowTo === null) return;
    const mine = generation;
    const pending = fetchWindow(windowTo).then((next) => {
      if (mine !== generation) return;
      records = next.records.filter((record) => record.k !== 'screen');
      windowTo = next.to;
      index = 0;
    }).catch((failure) => {
      if (mine !== generation) return;
      error.textContent = failure.message;
      pause();
    }).finally(() => {
      if (loading === pending) loading = null;
    });
    loading = pending;
  }

  /** The idle limit in ms, or Infinity when gaps are played as they were. */
  const idleLimit = () => (skip.checked && Number(limit.value) > 0 ? Number(limit.value) * 1000 : Infinity);

  function tick(now) {
    if (!playing) return;
    let next = position + (now - last) * Number(speed.value);
    last = now;
    // The next moment something happens: a record, the window's end, or the recording's.
    const upcoming = index < records.length ? records[index].t : (windowTo ?? duration);
    if (upcoming - position > idleLimit()) {
      const jump = upcoming - idleLimit() - position;
      skippedMs += jump;
      position += jump;
      next += jump;
    }
    while (index < records.length && records[index].t <= next) apply(records[index++]);
    if (index >= records.length && windowTo !== null) {
      // Wait at the window's end for the next one.
      position = Math.min(next, windowTo);
      loadNext();
    } else {
      position = Math.min(next, duration);
    }
    if (index >= records.length && windowTo === null && position >= duration) {
      position = duration;
      pause();
    }
    show();
    if (playing) frame = requestAnimationFrame(tick);
  }

  /** Moves to `target` ms: the screen then (from the keyframe before it), and what follows. */
  function jump(target) {
    const mine = ++generation;
    // Idle time skipped counts anew from each seek.
    skippedMs = 0;
    position = Math.max(0, Math.min(target, duration));
    records = [];
    index = 0;
    windowTo = position;
    // Cleared at once: the old screen never stands for the new moment.
    terminal.reset();
    show();
    const from = position;
    const loaded = fetchWindow(from).then((answer) => {
      if (mine !== generation) return;
      records = answer.records;
      windowTo = answer.to;
      // The screen at that moment first, then what follows it.
      while (index < records.length && (records[index].k === 'screen' || records[index].t <= position)) apply(records[index++]);
      error.textContent = '';
    }).catch((failure) => {
      if (mine === generation) error.textContent = failure.message;
    }).finally(() => {
      if (loading === loaded) loading = null;
    });
    // While it loads, playing waits (and no window after it is asked for).
    loading = loaded;
    return loaded;
  }

  async function start() {
    if (position >= duration && index >= records.length && windowTo === null) await jump(0);
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

  play.addEventListener('click', () => (playing ? pause() : start()));
  seek.addEventListener('input', () => jump((Number(seek.value) / 1000) * duration));

  get(`sessions/${encodeURIComponent(sid)}/segments`).then(async (answer) => {
    const session = answer.session;
    duration = answer.duration_ms || 0;
    starts = answer.segments.map((segment) => segment.start_ms);
    meta.user.textContent = session.user_name || session.user_id;
    meta.device.replaceChildren(h('a', { href: `#/device/${encodeURIComponent(session.device_id)}` }, session.device_name || session.device_id));
    meta.date.textContent = when(session.started_at);
    meta.duration.textContent = session.ended_at ? spoken(duration) : `${spoken(duration)} (running)`;
    meta.command.textContent = session.command || 'shell';
    keyframes.replaceChildren(...starts.map((start) => h('option', { value: duration ? Math.round((start / duration) * 1000) : 0 })));
    box.dataset.keyframes = String(starts.length);
    ({ terminal } = createTerminal(box, { cols: session.width || 80, rows: session.height || 24, cursorBlink: false, disableStdin: true }));
    await jump(0);
    start();
  }).catch((failure) => { error.textContent = failure.message; });

  return () => {
    pause();
    generation += 1;
    if (terminal) terminal.dispose();
  };
}
