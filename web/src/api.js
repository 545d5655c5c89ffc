// The hub's JSON API from the browser: the session cookie travels by itself (HttpOnly), and
// every state-changing request carries the CSRF token the hub gave at login.
//
// Three outcomes are kept apart, because mixing them logged operators out on a hub restart or
// a mistyped code: the hub is unreachable (a network error, or a proxy's non-JSON 502/503/504:
// the login is untouched, keep retrying), the session has ended (the hub's session endpoint
// itself answers 401), and a request refused for its own reasons (a wrong current password or
// 2FA code is a 401 too, but the session is still good: show the error).

export const API = '/api/management/v1';

let csrfToken = null;
let currentUser = null;
let permissions = [];
let onExpired = () => {};
let reachable = true;
const reachabilityListeners = [];

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** No answer from the hub itself: says nothing about the login. */
export class HubUnreachable extends Error {
  constructor() {
    super('Hub unreachable, retrying…');
  }
}

export function setSession(session) {
  csrfToken = session ? session.csrf_token : null;
  currentUser = session ? session.user : null;
  permissions = session && Array.isArray(session.permissions) ? session.permissions : [];
}

export function user() {
  return currentUser;
}

/** Whether the user holds `permission` in general (the hub's session answer says), to decide
 * which pages and buttons to offer. The hub still checks every request. */
export function may(permission) {
  return permissions.includes(permission);
}

export function csrfHeaders() {
  return csrfToken ? { 'X-CSRF-Token': csrfToken } : {};
}

/** Called with a message when the hub says the session has ended. */
export function whenExpired(handler) {
  onExpired = handler;
}

export function sessionExpired(message = 'Your session has ended; please log in again.') {
  setSession(null);
  onExpired(message);
}

/** `handler(true|false)` hears whenever the hub stops or starts answering. */
export function whenReachability(handler) {
  reachabilityListeners.push(handler);
}

export function hubReachable() {
  return reachable;
}

function noteReachable(value) {
  if (value === reachable) return;
  reachable = value;
  for (const handler of reachabilityListeners) handler(value);
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) return new HttpError(response.status, body.error);
  } catch { /* not JSON */ }
  return new HttpError(response.status, `${response.status} ${response.statusText}`);
}

/** The hub answers every error in JSON; a gateway error page comes from a proxy before it. */
function fromProxy(response) {
  const type = response.headers.get('content-type') || '';
  return [502, 503, 504].includes(response.status) && !type.includes('json');
}

/** `fetch`, with "the hub did not answer" turned into [`HubUnreachable`]. */
export async function hubFetch(url, init) {
  let response;
  try {
    response = await fetch(url, { credentials: 'same-origin', ...init });
  } catch (failure) {
    if (init && init.signal && init.signal.aborted) throw failure;
    noteReachable(false);
    throw new HubUnreachable();
  }
  if (fromProxy(response)) {
    noteReachable(false);
    throw new HubUnreachable();
  }
  noteReachable(true);
  return response;
}

/**
 * After a 401: whether the session really ended (the session endpoint says so too). A 401 for
 * a wrong password or code leaves the session alone; the caller shows the hub's message.
 */
export async function expiredAfterUnauthorized() {
  if ((await checkSession()) !== 'expired') return false;
  sessionExpired();
  return true;
}

/** A JSON request; `expectLogin: false` keeps a 401 from logging out (the login form itself). */
export async function request(method, path, body, { expectLogin = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') Object.assign(headers, csrfHeaders());
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await hubFetch(path.startsWith('/') ? path : `${API}/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && expectLogin) await expiredAfterUnauthorized();
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);
export const put = (path, body) => request('PUT', path, body);
export const remove = (path) => request('DELETE', path);

/** The hub's answer to a login without a code, for a user with two-factor authentication. */
export const CODE_REQUIRED = 'two-factor code required';

/**
 * Asks the hub about the session behind the cookie: 'valid' (and remembers it), 'expired'
 * (a 401: no session, or an ended one) or 'unknown' (unreachable, or an error of the hub's:
 * keep the login and ask again later).
 */
export async function checkSession() {
  try {
    setSession(await request('GET', 'auth/web/session', undefined, { expectLogin: false }));
    return 'valid';
  } catch (failure) {
    if (failure instanceof HttpError && failure.status === 401) {
      setSession(null);
      return 'expired';
    }
    return 'unknown';
  }
}

/** Logs in; a user with 2FA first gets an HttpError whose message is `CODE_REQUIRED`, then
 * the login page asks for the code and calls this again with it. */
export async function login(username, password, code) {
  const body = code ? { username, password, code } : { username, password };
  const session = await request('POST', 'auth/web/login', body, { expectLogin: false });
  setSession(session);
  return session;
}

export async function logout() {
  try {
    await request('POST', 'auth/web/logout', undefined, { expectLogin: false });
  } finally {
    setSession(null);
  }
}

/** `wss://` URL of a hub path on this origin. */
export function websocketUrl(path) {
  return `wss://${location.host}${path}`;
}

/** For a page whose loads may overlap (filters changed quickly): `newest(request)` resolves to
 * `{ value }`, or to null when a later call started meanwhile, so that a slow answer to an
 * earlier filter never replaces a later one; a stale failure is dropped too. */
export function newestOnly() {
  let generation = 0;
  return async function newest(request) {
    const mine = ++generation;
    try {
      const value = await request;
      return mine === generation ? { value } : null;
    } catch (failure) {
      if (mine === generation) throw failure;
      return null;
    }
  };
}
