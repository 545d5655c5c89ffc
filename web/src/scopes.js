// Checks a grant's or an access request's scope before it is sent: `*` (every device),
// `tag:NAME` (a group) or the id of an existing device. The hub stores any other text as a
// device id, which then grants nothing: `operator@site-a` looked right and did nothing.

import { get } from './api.js';

/** The hub's tag rule (crates/tether-hub/src/roles.rs, valid_tag). */
const TAG = /^[A-Za-z0-9._=-]{1,64}$/;

/** Device ids: UUIDs (Tether), or 24 hex digits (devices migrated from older Mender servers). */
const DEVICE_ID = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{24})$/i;

/**
 * Why `text` is not a usable scope, or null when it is one. A device id must name a device the
 * caller sees; with `unseen` (an access request, for devices the requester cannot see yet) an
 * id-shaped text is enough. Throws when the hub cannot be asked.
 */
export async function scopeProblem(text, { unseen = false } = {}) {
  const scope = text.trim();
  if (scope === '*' || scope === 'all') return null;
  if (scope.startsWith('tag:')) {
    return TAG.test(scope.slice(4)) ? null : `“${scope}”: a tag is 1 to 64 letters, digits, '-', '_', '.' or '='.`;
  }
  if (!scope) return 'A scope is missing: write *, tag:NAME or a device id.';
  const byId = (await get(`devices?id_prefix=${encodeURIComponent(scope)}`)).devices;
  if (byId.some((device) => device.id === scope)) return null;
  if (unseen && DEVICE_ID.test(scope)) return null;
  const named = (await get(`devices?name=${encodeURIComponent(scope)}`)).devices;
  if (named.length === 1) return `“${scope}” is a device's name: write its id ${named[0].id}, or tag:${scope} for a group.`;
  const group = TAG.test(scope) ? ` For the group, write tag:${scope}.` : '';
  return `“${scope}” is not a scope: write * (every device), tag:NAME (a group) or an existing device id.${group}`;
}

/** The first problem among `scopes`, or null. */
export async function scopesProblem(scopes) {
  for (const scope of scopes) {
    const problem = await scopeProblem(scope);
    if (problem) return problem;
  }
  return null;
}

/**
 * What a grant or a policy may be on, for a select: every device, each known group (the tags
 * of the accepted devices and of the approval policies) and each accepted device by name.
 * Returns [{value, label}].
 */
export async function scopeChoices() {
  const [{ devices }, policies] = await Promise.all([
    get('devices?status=accepted&limit=1000'),
    get('access/policies').catch(() => ({ require_approval: [] })),
  ]);
  const tags = new Set(devices.flatMap((device) => device.tags || []));
  for (const scope of policies.require_approval || []) if (scope.startsWith('tag:')) tags.add(scope.slice(4));
  return [
    { value: '*', label: '* (every device)' },
    ...[...tags].sort().map((tag) => ({ value: `tag:${tag}`, label: `tag:${tag} (group)` })),
    ...devices.map((device) => ({ value: device.id, label: `${device.name} (device)` })),
  ];
}
