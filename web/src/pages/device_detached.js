// The device page's detached shells: terminals on this device whose connection dropped without
// ending them (a closed laptop, a killed `tether terminal`), which the device keeps for its
// grace period (`GET /sessions/detached`). Re-attach opens one in a new terminal tab, replaying
// its output. The list is asked again every 15 s while the page shows, and when a tab changes.

import { get, user } from '../api.js';
import { ago, h, when } from '../dom.js';

/** How often the list is asked again (the hub logs nothing for it; see detached.rs). */
const REFRESH_MS = 15000;

/**
 * `reattach(sid)` opens a shell in a tab; `held()` names the sessions the page's tabs hold
 * (a tab re-attaching by itself after a dropped connection is not offered again).
 * Returns {panel, refresh(), cleanup()}.
 */
export function detachedPanel(device, { reattach, held }) {
  const list = h('ul', { class: 'detached-list', id: 'detached-list' });
  const status = h('p', { class: 'notice', id: 'detached-status', role: 'status' }, 'Looking for detached shells…');
  const panel = h('section', { class: 'panel', id: 'detached', 'aria-labelledby': 'detached-heading' },
    h('h2', { id: 'detached-heading' }, 'Detached shells'),
    h('p', { class: 'notice hint' }, 'Shells left running on this device when their connection dropped; the device keeps each for a while, and Re-attach opens it in a new tab with its earlier output.'),
    status, list);
  let loading = false;
  let stopped = false;

  function row(session) {
    const mine = user() && session.user_id === user().id;
    const text = h('span', { id: `detached-text-${session.sid}` },
      `Shell started ${when(session.created_at)}, detached ${ago(session.detached_at)} (${when(session.detached_at)}); kept until ${when(session.expires_at)}`,
      mine ? '' : ' · another user\'s: only its owner can re-attach it');
    const item = h('li', { dataset: { sid: session.sid } }, text);
    if (mine) {
      item.append(' ', h('button', {
        type: 'button', class: 'small', 'aria-describedby': text.id, dataset: { reattach: session.sid },
        onclick: () => {
          item.remove();
          reattach(session.sid);
          render(shown.filter((other) => other.sid !== session.sid));
        },
      }, 'Re-attach'));
    }
    return item;
  }

  let shown = [];
  function render(sessions) {
    shown = sessions;
    list.replaceChildren(...sessions.map(row));
    status.className = 'notice';
    status.textContent = sessions.length
      ? `${sessions.length} detached shell${sessions.length > 1 ? 's' : ''} on this device.`
      : 'No detached shells on this device.';
    panel.dataset.count = String(sessions.length);
  }

  async function refresh() {
    if (loading || stopped) return;
    loading = true;
    try {
      const answer = await get('sessions/detached');
      const ours = new Set(held());
      if (!stopped) render(answer.sessions.filter((session) => session.device_id === device.id && !ours.has(session.sid)));
    } catch (failure) {
      status.className = 'error';
      status.textContent = `Could not list the detached shells: ${failure.message}`;
    } finally {
      loading = false;
    }
  }

  const timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  refresh();
  return {
    panel,
    /** Asks now, and again shortly: a shell just detached is marked by the hub a moment later. */
    refresh() {
      refresh();
      setTimeout(() => { if (!stopped) refresh(); }, 1500);
    },
    cleanup() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
