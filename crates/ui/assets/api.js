// Calls to the examplebank API with the signed-in app's access token. A 401 gets one refresh
// and one retry. Failures become ApiError with the server's own words (`detail` of the
// application/problem+json body) and the problem `kind` (the end of its `type` URN).

import { forget, freshAccessToken, refresh, SessionEnded, UserError } from './auth.js';
import { uuid } from './crypto-util.js';

export class ApiError extends UserError {
  constructor(status, kind, detail, body = null) {
    super(detail, adviceFor(status, kind));
    this.status = status;
    this.kind = kind;
    this.body = body;
  }
}

const ADVICE_BY_KIND = {
  'no-consent': 'Turn on the rewards programme in Bank › Account, then try again.',
  restricted: 'Lift the restriction in Bank › Account, then try again.',
  'erasure-pending': 'Nothing can be changed while your data is being erased.',
  'insufficient-points': 'Redeem fewer points.',
  'username-taken': 'Choose another username.',
};

function adviceFor(status, kind) {
  if (ADVICE_BY_KIND[kind]) return ADVICE_BY_KIND[kind];
  if (status === 0) return 'Check that the server is running and your connection works, then try again.';
  if (status === 401) return 'Sign in again.';
  if (status === 403) return 'This account is not allowed to do that.';
  if (status === 408 || status === 503 || status === 429) return 'Wait a moment and try again.';
  if (status >= 500) return 'Try again later; the error has been logged on the server.';
  if (kind === 'validation' || status === 422 || status === 400) return 'Correct the value and try again.';
  if (status === 404) return 'Reload the page; if this keeps happening, this server may not offer it yet.';
  if (status === 409) return 'Reload the screen to see the current state, then try again.';
  return 'Try again; if it keeps failing, reload the page.';
}

/** True when an endpoint is not there (yet): 404 or 405 from the router. */
export function isMissing(error) {
  return error instanceof ApiError && (error.status === 404 || error.status === 405);
}

async function toError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const type = typeof body?.type === 'string' ? body.type : '';
  const kind = type.startsWith('urn:examplebank:problem:') ? type.slice('urn:examplebank:problem:'.length) : '';
  const detail =
    (typeof body?.detail === 'string' && body.detail) ||
    (typeof body?.title === 'string' && body.title) ||
    `the server answered ${response.status}`;
  return new ApiError(response.status, kind, detail, body);
}

async function send(app, method, path, options, accessToken) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${accessToken}` };
  if (options.json !== undefined) headers['Content-Type'] = 'application/json';
  if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
  try {
    return await fetch(path, {
      method,
      headers,
      body: options.json === undefined ? undefined : JSON.stringify(options.json),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach examplebank.');
  }
}

/**
 * Calls the API as `app` ("bank" or "admin"). Resolves to { status, data, headers } for a
 * 2xx answer; rejects with ApiError (or SessionEnded) otherwise.
 */
export async function call(app, method, path, options = {}) {
  let response = await send(app, method, path, options, await freshAccessToken(app));
  if (response.status === 401) {
    // The access token may have expired or been revoked: one refresh, one retry.
    const renewed = await refresh(app);
    response = await send(app, method, path, options, renewed.accessToken);
    if (response.status === 401) {
      const error = await toError(response);
      forget(app);
      throw new SessionEnded(`Your session has ended (${error.message}).`);
    }
  }
  if (!response.ok) throw await toError(response);
  let data = null;
  const type = response.headers.get('Content-Type') ?? '';
  if (response.status !== 204 && type.includes('json')) data = await response.json();
  else if (response.status !== 204) data = await response.text();
  return { status: response.status, data, headers: response.headers };
}

export const get = async (app, path) => (await call(app, 'GET', path)).data;

export function newIdempotencyKey() {
  return uuid();
}

/** A sentence for any failure: what happened, then what to do. */
export function describe(error) {
  if (error instanceof UserError) {
    const what = String(error.message).replace(/\.?$/, '.');
    const first = what.charAt(0).toUpperCase() + what.slice(1);
    return error.advice ? `${first} ${error.advice}` : first;
  }
  return `Something went wrong in this page (${error?.message ?? error}). Reload the page and try again.`;
}
