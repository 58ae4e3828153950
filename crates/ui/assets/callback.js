// /callback: where the login page sends the browser back with a code. Checks the state,
// exchanges the code (with the PKCE verifier) for tokens, then opens the app that asked.

import { describe } from './api.js';
import { completeSignIn } from './auth.js';
import { $, fill, h } from './dom.js';

/** Only paths on this site are followed after signing in. */
function safePath(path, fallback) {
  return typeof path === 'string' && path.startsWith('/') && !path.startsWith('//') && !path.startsWith('/\\') ? path : fallback;
}

async function main() {
  const params = new URLSearchParams(window.location.search);
  // The code must not stay in the address bar or the history.
  window.history.replaceState(null, '', '/callback');
  const box = $('#callback');
  try {
    const { returnTo } = await completeSignIn(params);
    fill(box, h('p', { class: 'status ok', role: 'status' }, 'Signed in. Opening the app…'));
    window.location.replace(safePath(returnTo, '/'));
  } catch (error) {
    const back = safePath(error.back, '/');
    fill(
      box,
      h('h1', { tabindex: '-1' }, 'Signing in did not work'),
      h('p', { class: 'status error', role: 'alert' }, describe(error)),
      h('a', { class: 'button primary', href: back }, back.startsWith('/admin') ? 'Back to the admin console' : 'Back to the app'),
    );
    box.querySelector('h1')?.focus();
  }
}

main();
