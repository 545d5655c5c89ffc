// Devices: server-side search, filters and pagination (the hub cuts the page, so a fleet of
// 10,000 stays fast), online status, last seen, agent version, OS and architecture (from the
// device's inventory, also filters), tags (the device's groups) and identity attributes; pending
// devices are accepted or rejected here.

import { get, newestOnly, post, user } from '../api.js';
import { ago, debounce, h } from '../dom.js';

const PAGE = 50;

/** The device's tags (its groups, which grants name as `tag:NAME`), then its identity. */
function tags(device) {
  const groups = (device.tags || []).map((tag) => h('span', { class: 'tag group', title: 'group tag' }, tag));
  const identity = Object.entries(device.identity || {}).map(([key, value]) => h('span', { class: 'tag', title: 'identity' }, `${key}=${value}`));
  return [...groups, ...identity];
}

export function devicesPage(container) {
  let offset = 0;
  const search = h('input', { type: 'search', id: 'device-search', placeholder: 'Search name, id, version, tags, inventory' });
  const status = h('select', { id: 'device-status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'any status'),
    h('option', { value: 'accepted' }, 'accepted'),
    h('option', { value: 'pending' }, 'pending'),
    h('option', { value: 'rejected' }, 'rejected'));
  const online = h('select', { id: 'device-online', 'aria-label': 'Online or offline' },
    h('option', { value: '' }, 'online or offline'),
    h('option', { value: 'true' }, 'online'),
    h('option', { value: 'false' }, 'offline'));
  const os = h('input', { type: 'search', id: 'device-os', size: 10, placeholder: 'OS', 'aria-label': 'OS name contains' });
  const seen = h('datalist', { id: 'device-architectures' });
  const architecture = h('input', { type: 'search', id: 'device-architecture', size: 10, list: 'device-architectures', placeholder: 'architecture', 'aria-label': 'Architecture' });
  const architectures = new Set();
  const body = h('tbody');
  const summary = h('span', { id: 'device-count' });
  const previous = h('button', { type: 'button', onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, '‹ Previous');
  const next = h('button', { type: 'button', onclick: () => { offset += PAGE; load(); } }, 'Next ›');
  const error = h('p', { class: 'error' });
  const admin = user() && user().admin;

  async function decide(device, verdict) {
    // Rejecting cuts the device off: asked first (issue #19, admin's confirmations).
    if (verdict === 'reject' && !window.confirm(`Reject the device ${device.name}? It can no longer connect.`)) return;
    try {
      await post(`devices/${encodeURIComponent(device.id)}/${verdict}`);
      load();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  function row(device) {
    const inventory = device.inventory;
    if (inventory && inventory.architecture && !architectures.has(inventory.architecture)) {
      architectures.add(inventory.architecture);
      seen.append(h('option', { value: inventory.architecture }));
    }
    const actions = [];
    if (device.status === 'pending' && admin) {
      actions.push(h('button', { type: 'button', class: 'small primary', dataset: { accept: device.name }, onclick: () => decide(device, 'accept') }, 'Accept'));
      actions.push(h('button', { type: 'button', class: 'small', dataset: { reject: device.name }, onclick: () => decide(device, 'reject') }, 'Reject'));
    }
    if (device.status === 'accepted') {
      actions.push(h('a', { class: 'button small', href: `#/device/${encodeURIComponent(device.id)}`, dataset: { open: device.name } }, 'Open'));
    }
    return h('tr', { dataset: { device: device.name } },
      h('td', {}, device.online ? h('span', { class: 'online' }, '● online') : h('span', { class: 'offline' }, '○ offline')),
      h('td', {}, device.status === 'accepted'
        ? h('a', { href: `#/device/${encodeURIComponent(device.id)}` }, device.name)
        : device.name, h('div', { class: 'notice' }, device.id.slice(0, 12))),
      h('td', {}, device.status),
      // last_seen_at is refreshed only every few minutes while a device is connected: an online
      // device is seen now, not at its last refresh.
      h('td', {}, device.online ? 'online now' : ago(device.last_seen_at)),
      h('td', {}, device.agent_version || '—'),
      h('td', { class: 'device-os' }, inventory ? [inventory.os_name, inventory.os_version].filter(Boolean).join(' ') || '—' : '—'),
      h('td', { class: 'device-architecture' }, (inventory && inventory.architecture) || '—'),
      h('td', {}, tags(device)),
      h('td', {}, actions));
  }

  const newest = newestOnly();
  async function load() {
    const query = new URLSearchParams({ offset, limit: PAGE });
    if (search.value.trim()) query.set('search', search.value.trim());
    if (status.value) query.set('status', status.value);
    if (online.value) query.set('online', online.value);
    if (os.value.trim()) query.set('os', os.value.trim());
    if (architecture.value.trim()) query.set('architecture', architecture.value.trim());
    try {
      const answer = await newest(get(`devices?${query}`));
      if (!answer) return;
      const list = answer.value;
      error.textContent = '';
      const total = list.total ?? list.devices.length;
      body.replaceChildren(...list.devices.map(row));
      if (!list.devices.length) body.append(h('tr', {}, h('td', { colspan: 9, class: 'notice' }, 'No devices match.')));
      summary.textContent = total ? `${offset + 1}–${offset + list.devices.length} of ${total}` : '0 devices';
      previous.disabled = offset === 0;
      next.disabled = offset + PAGE >= total;
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  const reload = debounce(() => { offset = 0; load(); }, 250);
  search.addEventListener('input', reload);
  status.addEventListener('change', reload);
  online.addEventListener('change', reload);
  os.addEventListener('input', reload);
  architecture.addEventListener('input', reload);

  container.append(
    h('h1', {}, 'Devices'),
    h('div', { class: 'toolbar' }, search, status, online, os, architecture, seen,
      h('button', { type: 'button', onclick: load }, 'Refresh')),
    error,
    h('div', { class: 'table-scroll' }, h('table', { id: 'devices' },
      h('thead', {}, h('tr', {}, ['Status', 'Name', 'Admission', 'Last seen', 'Agent', 'OS', 'Arch.', 'Tags · identity', ''].map((t) => h('th', {}, t)))),
      body)),
    h('div', { class: 'pager' }, previous, next, summary));
  load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}
