// Signing in through examplebank's own login page: OAuth 2 authorization code with PKCE (S256)
// for the public client `simulator`. Tokens live in memory and are mirrored in sessionStorage
// (so they survive the login redirect and a reload of this tab, and end with the tab); never
// in cookies, never in persistent storage. The refresh token rotates on every use: the newest one is
// always the one kept, and only one refresh runs at a time (presenting an old refresh token
// would end the whole session).

import { base64url, randomBytes, sha256 } from './crypto-util.js';

export const CLIENT_ID = 'simulator';
const TOKENS_KEY = 'eb.tokens.';
const PENDING_KEY = 'eb.pkce';
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

/** What the two front ends ask for. */
export const APPS = {
  bank: { scope: 'openid bank', needs: 'bank', home: '/#/bank' },
  admin: { scope: 'openid admin', needs: 'admin', home: '/admin' },
};

/** A failure the person can act on: what happened and what to do. */
export class UserError extends Error {
  constructor(message, advice = '') {
    super(message);
    this.advice = advice;
  }
}

/** The session is over (signed out elsewhere, erased, or the refresh token was refused). */
export class SessionEnded extends UserError {
  constructor(message = 'Your session has ended.') {
    super(message, 'Sign in again.');
  }
}

const memory = new Map();
const timers = new Map();
const refreshes = new Map();
const endListeners = new Set();

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function readJson(key) {
  try {
    const raw = storage()?.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function writeJson(key, value) {
  try {
    if (value === null) storage()?.removeItem(key);
    else storage()?.setItem(key, JSON.stringify(value));
  } catch {
    // Storage can be full or switched off: the tokens still live in memory for this page.
  }
}

export function tokens(app) {
  if (!memory.has(app)) memory.set(app, readJson(TOKENS_KEY + app));
  return memory.get(app);
}

export function isSignedIn(app) {
  return Boolean(tokens(app)?.accessToken);
}

function store(app, value) {
  memory.set(app, value);
  writeJson(TOKENS_KEY + app, value);
  clearTimeout(timers.get(app));
  timers.delete(app);
  if (value) scheduleRefresh(app);
}

function fromTokenResponse(body, previous) {
  return {
    accessToken: body.access_token,
    // Rotation: the newest refresh token replaces the old one.
    refreshToken: body.refresh_token ?? previous?.refreshToken ?? null,
    expiresAt: Date.now() + Number(body.expires_in ?? 900) * 1000,
    scope: body.scope ?? previous?.scope ?? '',
  };
}

function scheduleRefresh(app) {
  const current = tokens(app);
  if (!current?.refreshToken) return;
  const wait = Math.max(5_000, current.expiresAt - Date.now() - REFRESH_MARGIN_MS);
  timers.set(
    app,
    setTimeout(() => {
      refresh(app).catch(() => {
        // Reported through onSessionEnded, or retried on the next request.
      });
    }, wait),
  );
}

/** Called with the app's name whenever its session ends without the person logging out. */
export function onSessionEnded(listener) {
  endListeners.add(listener);
}

function endSession(app) {
  store(app, null);
  for (const listener of endListeners) listener(app);
}

function form(fields) {
  return {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams(fields),
  };
}

async function problemDetail(response) {
  try {
    const body = await response.json();
    return body.detail ?? body.error_description ?? body.title ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** Gets a new access token with the refresh token; one refresh at a time per app. */
export function refresh(app) {
  if (!refreshes.has(app)) {
    const running = refreshNow(app).finally(() => refreshes.delete(app));
    refreshes.set(app, running);
  }
  return refreshes.get(app);
}

async function refreshNow(app) {
  const current = tokens(app);
  if (!current?.refreshToken) {
    endSession(app);
    throw new SessionEnded('You are not signed in.');
  }
  let response;
  try {
    response = await fetch(
      '/identity/v1/token',
      form({ grant_type: 'refresh_token', refresh_token: current.refreshToken, client_id: CLIENT_ID }),
    );
  } catch {
    throw new UserError(
      'Could not reach examplebank to renew your session.',
      'Check that the server is running and your connection works, then try again.',
    );
  }
  if (response.ok) {
    store(app, fromTokenResponse(await response.json(), current));
    return tokens(app);
  }
  if (response.status === 400 || response.status === 401) {
    const detail = await problemDetail(response);
    endSession(app);
    throw new SessionEnded(`Your session has ended (${detail}).`);
  }
  throw new UserError(
    `examplebank could not renew your session (${await problemDetail(response)}).`,
    'Wait a moment and try again.',
  );
}

/** A token good for at least a few more seconds, refreshing first when needed. */
export async function freshAccessToken(app) {
  const current = tokens(app);
  if (!current?.accessToken) throw new SessionEnded('You are not signed in.');
  if (current.expiresAt - Date.now() < 10_000) {
    return (await refresh(app)).accessToken;
  }
  return current.accessToken;
}

/** The origin the identity provider was told to return to; it must be this page's origin. */
export function redirectUri() {
  return `${window.location.origin}/callback`;
}

/** Starts signing in: remembers the PKCE verifier and state, then opens the login page. */
export async function startSignIn(app, returnTo = APPS[app].home) {
  const verifier = base64url(randomBytes(32));
  const challenge = base64url(await sha256(new TextEncoder().encode(verifier)));
  const state = base64url(randomBytes(24));
  writeJson(PENDING_KEY, { app, verifier, state, returnTo, startedAt: Date.now() });
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri(),
    scope: APPS[app].scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  window.location.assign(`/identity/v1/authorize?${query}`);
}

/**
 * Finishes signing in on /callback: checks `state` (and `iss`), exchanges the code with the
 * verifier, keeps the tokens. Returns where to go next.
 */
export async function completeSignIn(params) {
  const pending = readJson(PENDING_KEY);
  // One use only, whatever happens next.
  writeJson(PENDING_KEY, null);
  if (!pending || !APPS[pending.app]) {
    throw new UserError(
      'This sign-in was not started from this tab, or it was already finished.',
      'Go back to the app and press "Sign in" again.',
    );
  }
  const back = pending.returnTo || APPS[pending.app].home;
  const fail = (message, advice) => Object.assign(new UserError(message, advice), { back });
  if (!params.get('state') || params.get('state') !== pending.state) {
    throw fail(
      'The answer from the login page does not belong to this sign-in (the state does not match), so it was ignored.',
      'Go back to the app and sign in again.',
    );
  }
  const issuer = params.get('iss');
  if (issuer && issuer.replace(/\/+$/, '') !== window.location.origin) {
    throw fail(
      `The answer came from an unexpected issuer (${issuer}).`,
      `Open examplebank at ${issuer} and sign in there.`,
    );
  }
  const error = params.get('error');
  if (error === 'access_denied') {
    throw fail(
      pending.app === 'admin'
        ? 'This account is not an administrator, so it cannot open the admin console.'
        : 'This account cannot use the bank app (administrators have no bank account).',
      pending.app === 'admin'
        ? 'Sign in with an account made by "examplebank admin create".'
        : 'Sign in with a personal account, or create one.',
    );
  }
  if (error) {
    throw fail(`The login page refused the request (${error}).`, 'Go back to the app and try again.');
  }
  const code = params.get('code');
  if (!code) throw fail('The login page answered without a code.', 'Go back to the app and sign in again.');
  let response;
  try {
    response = await fetch(
      '/identity/v1/token',
      form({
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirectUri(),
        code_verifier: pending.verifier,
        client_id: CLIENT_ID,
      }),
    );
  } catch {
    throw fail('Could not reach examplebank to finish signing in.', 'Check that the server is running, then sign in again.');
  }
  if (!response.ok) {
    throw fail(`Signing in failed: ${await problemDetail(response)}.`, 'Go back to the app and sign in again.');
  }
  const body = await response.json();
  const granted = String(body.scope ?? '').split(' ');
  if (!granted.includes(APPS[pending.app].needs)) {
    throw fail(
      `This account was not given the "${APPS[pending.app].needs}" permission this app needs.`,
      pending.app === 'admin' ? 'Sign in with an administrator account.' : 'Sign in with a personal account.',
    );
  }
  store(pending.app, fromTokenResponse(body, null));
  return { app: pending.app, returnTo: back };
}

/**
 * Logs out: the refresh token is revoked at the provider (which ends the session and every
 * access token of it), then the tokens are forgotten here whatever the answer.
 * Returns null on success, or a sentence saying what could not be done.
 */
export async function logout(app) {
  const current = tokens(app);
  let problem = null;
  const token = current?.refreshToken ?? current?.accessToken;
  if (token) {
    try {
      const response = await fetch('/identity/v1/revoke', form({ token, client_id: CLIENT_ID }));
      if (!response.ok) problem = `the server answered: ${await problemDetail(response)}`;
    } catch {
      problem = 'the server could not be reached';
    }
  }
  store(app, null);
  return problem;
}

/** Forgets the tokens without asking the server (after an erasure, for example). */
export function forget(app) {
  store(app, null);
}

// Tokens read back from sessionStorage after a reload get their refresh timer again.
export function resume(app) {
  if (tokens(app)) scheduleRefresh(app);
}
