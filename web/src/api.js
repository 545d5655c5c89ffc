// The hub's JSON API from the browser: the session cookie travels by itself (HttpOnly), and
// every state-changing request carries the CSRF token the hub gave at login. A 401 anywhere
// means the session is gone: back to the login page with a message.

export const API = '/api/management/v1';

let csrfToken = null;
let currentUser = null;
let onExpired = () => {};

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setSession(session) {
  csrfToken = session ? session.csrf_token : null;
  currentUser = session ? session.user : null;
}

export function user() {
  return currentUser;
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

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) return new HttpError(response.status, body.error);
  } catch { /* not JSON */ }
  return new HttpError(response.status, `${response.status} ${response.statusText}`);
}

/** A JSON request; `expectLogin: false` keeps a 401 from redirecting (the login form itself). */
export async function request(method, path, body, { expectLogin = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') Object.assign(headers, csrfHeaders());
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path.startsWith('/') ? path : `${API}/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (response.status === 401 && expectLogin) {
    sessionExpired();
    throw await errorOf(response);
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);
export const put = (path, body) => request('PUT', path, body);

/** The hub's answer to a login without a code, for a user with two-factor authentication. */
export const CODE_REQUIRED = 'two-factor code required';

/** The session behind the cookie, or null (a fresh page, an expired session). */
export async function restoreSession() {
  try {
    const session = await request('GET', 'auth/web/session', undefined, { expectLogin: false });
    setSession(session);
    return session;
  } catch {
    setSession(null);
    return null;
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
