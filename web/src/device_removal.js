// "Remove device" for whoever manages devices, on the device page: asks first (the device's
// credentials, tags and kept shells go; it must be admitted again to come back), then
// `DELETE /devices/{id}` and back to the device list.

import { may, remove } from './api.js';
import { h } from './dom.js';

/** The removal panel of `device`, or null for a user who may not remove devices. */
export function removalPanel(device) {
  if (!may('manage_devices')) return null;
  const error = h('p', { class: 'error', id: 'remove-device-error', role: 'alert' });
  const button = h('button', { type: 'button', id: 'remove-device', onclick: async () => {
    if (!window.confirm(`Remove the device ${device.name}? It is disconnected and must be admitted again to come back.`)) return;
    error.textContent = '';
    try {
      await remove(`devices/${encodeURIComponent(device.id)}`);
      location.hash = '#/devices';
    } catch (failure) {
      error.textContent = failure.message;
    }
  } }, 'Remove device');
  return h('section', { class: 'panel', id: 'device-removal' }, h('h2', {}, 'Remove'), button, error);
}
