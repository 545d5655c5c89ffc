// The header's count of access requests waiting for a decision, for approvers only: asked now,
// every 20 s, and at once after the Access page approves or denies one (`refreshPendingBadge`).
// A failed question leaves the last count (the hub may be restarting).

import { get, may, user } from './api.js';

const EVERY_MS = 20000;

let timer = null;

function badge() {
  return document.getElementById('pending-badge');
}

function show(count) {
  const element = badge();
  if (!element) return;
  element.hidden = count === 0;
  element.dataset.count = String(count);
  element.replaceChildren(String(count), Object.assign(document.createElement('span'), {
    className: 'visually-hidden',
    textContent: count === 1 ? ' request to decide' : ' requests to decide',
  }));
}

/** Counts the pending requests again now (nothing for a user who approves nothing). */
export async function refreshPendingBadge() {
  if (!user() || !may('approve_access')) {
    show(0);
    return;
  }
  try {
    const { requests } = await get('access/requests?all=true');
    if (user()) show(requests.filter((request) => request.status === 'pending').length);
  } catch { /* keep the last count */ }
}

/** Starts counting (once per login; routing calls it on every page). */
export function startPendingBadge() {
  refreshPendingBadge();
  if (timer) return;
  timer = setInterval(() => {
    if (!user()) {
      clearInterval(timer);
      timer = null;
      show(0);
      return;
    }
    refreshPendingBadge();
  }, EVERY_MS);
}
