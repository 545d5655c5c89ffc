// The device page's inventory panel: what the device's Tether agent reported of itself (OS,
// kernel, architecture, hostname, addresses, boot time, agent, features, protocol versions).
// Uptime is computed here from the boot time, so the agent never resends it. A stock
// mender-connect reports nothing: the panel says so and the page shows what the hub knows.

import { ago, h } from '../dom.js';

/** Whether the device reported `feature` (`terminal`, `files`, `forwards`, `consent`); true
 *  when it reported no inventory at all: then nothing is known to be off. */
export function featureOn(device, feature) {
  return !device.inventory || (device.inventory.features || []).includes(feature);
}

/** "3 d 4 h", "2 h 5 min", "40 s". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** The panel, and a cleanup that stops its uptime clock. */
export function inventoryPanel(device) {
  const inventory = device.inventory;
  if (!inventory) {
    return {
      panel: h('section', { class: 'panel', id: 'inventory' }, h('h2', {}, 'Inventory'),
        h('p', { class: 'notice', id: 'inventory-none' }, 'This device reports no inventory (its agent is not a Tether agent, e.g. a stock mender-connect): only what the hub knows is shown.')),
      cleanup() {},
    };
  }
  const uptime = h('dd', { id: 'inventory-uptime' });
  const tick = () => {
    uptime.textContent = inventory.boot_time
      ? `${duration(Date.now() / 1000 - inventory.boot_time)} (booted ${new Date(inventory.boot_time * 1000).toLocaleString()})`
      : '—';
  };
  tick();
  const timer = setInterval(tick, 1000);
  const row = (label, value, id) => [h('dt', {}, label), h('dd', { id }, value || '—')];
  const os = [inventory.os_name, inventory.os_version].filter(Boolean).join(' ');
  const list = h('dl', { class: 'facts', id: 'inventory-facts' },
    row('OS', os, 'inventory-os'),
    row('Kernel', inventory.kernel, 'inventory-kernel'),
    row('Architecture', inventory.architecture, 'inventory-architecture'),
    row('Hostname', inventory.hostname, 'inventory-hostname'),
    row('Addresses', (inventory.addresses || []).join(', '), 'inventory-addresses'),
    h('dt', {}, 'Uptime'), uptime,
    row('Agent', inventory.agent_version, 'inventory-agent'),
    row('Features', (inventory.features || []).join(', ') || 'none', 'inventory-features'),
    row('Protocol versions', (inventory.versions || []).join(', '), 'inventory-versions'));
  return {
    panel: h('section', { class: 'panel', id: 'inventory' }, h('h2', {}, 'Inventory'), list,
      h('p', { class: 'notice' }, `Reported ${ago(device.inventory_at)}.`)),
    cleanup() { clearInterval(timer); },
  };
}
