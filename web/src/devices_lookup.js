// Finding the device an operator names, as the CLI does (crates/tether-cli/src/resolve.rs): an
// exact id, then an exact name, then a unique id prefix; accepted devices win over pending or
// rejected namesakes. The hub does the matching (`GET /devices?name=` and `?id_prefix=`).

import { get } from './api.js';

const preferAccepted = (devices) => {
  const accepted = devices.filter((device) => device.status === 'accepted');
  return accepted.length ? accepted : devices;
};

const listing = (devices) => devices.map((device) => `${device.id} (${device.name}, ${device.status})`).join(', ');

/**
 * The one device `text` names: {device} or {error} (none, or several: listed). Throws only
 * when the hub cannot be asked.
 */
export async function findDevice(text) {
  const query = text.trim();
  if (!query) return { error: 'Name a device.' };
  const byPrefix = (await get(`devices?id_prefix=${encodeURIComponent(query)}`)).devices;
  const exact = byPrefix.find((device) => device.id === query);
  if (exact) return { device: exact };
  const steps = [(await get(`devices?name=${encodeURIComponent(query)}`)).devices, byPrefix];
  for (const found of steps.map(preferAccepted)) {
    if (found.length === 1) return { device: found[0] };
    if (found.length > 1) return { error: `“${query}” is ambiguous: it matches ${listing(found)}; use the full device id.` };
  }
  return { error: `No device is named “${query}” or has an id starting with it.` };
}
