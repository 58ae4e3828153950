// Sign-up (a JSON post to the identity provider) with the consent choices asked purpose by
// purpose, all off until the person turns them on. The choices wait in sessionStorage while
// the browser goes to the login page and back, and are applied after the first login.

import { describe } from './api.js';
import { isSignedIn, startSignIn, UserError } from './auth.js';
import { fill, h, statusLine, withProgress } from './dom.js';
import { POLICY_SUMMARY, POLICY_VERSION, PURPOSES } from './policy.js';

const CHOICES_KEY = 'eb.signup.choices';

export function saveChoices(choices) {
  try {
    sessionStorage.setItem(CHOICES_KEY, JSON.stringify(choices));
  } catch {
    // Without storage the person is asked again after signing in.
  }
}

export function readChoices() {
  try {
    const raw = sessionStorage.getItem(CHOICES_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function clearChoices() {
  try {
    sessionStorage.removeItem(CHOICES_KEY);
  } catch {
    // Nothing to clear.
  }
}

/** The consent questions: one checkbox per purpose, unchecked, with the notice's words. */
export function consentFieldset(idPrefix) {
  const boxes = {};
  const items = PURPOSES.map((purpose) => {
    const id = `${idPrefix}-${purpose.id}`;
    const box = h('input', { type: 'checkbox', id, name: purpose.id, 'aria-describedby': `${id}-text` });
    box.checked = false;
    boxes[purpose.id] = box;
    return h(
      'div',
      { class: 'choice' },
      box,
      h(
        'div',
        {},
        h('label', { for: id }, purpose.title),
        h('p', { id: `${id}-text`, class: 'hint' }, purpose.text, purpose.note ? ` ${purpose.note}` : ''),
      ),
    );
  });
  const fieldset = h(
    'fieldset',
    { class: 'consents' },
    h('legend', {}, 'What may examplebank use your data for?'),
    h('p', { class: 'hint' }, `Each purpose is separate and off unless you turn it on. ${POLICY_SUMMARY} (Privacy notice version ${POLICY_VERSION}.)`),
    items,
  );
  return {
    element: fieldset,
    values: () => Object.fromEntries(Object.entries(boxes).map(([k, box]) => [k, box.checked])),
  };
}

function field(id, label, attrs, hint = '') {
  const input = h('input', { id, name: id, required: true, ...attrs, 'aria-describedby': hint ? `${id}-hint` : null });
  return {
    input,
    element: h(
      'div',
      { class: 'field' },
      h('label', { for: id }, label),
      hint ? h('p', { id: `${id}-hint`, class: 'hint' }, hint) : null,
      input,
    ),
  };
}

export function renderSignup(root) {
  const username = field(
    'su-username',
    'Username',
    { autocomplete: 'username', minlength: '3', maxlength: '64', pattern: '[A-Za-z0-9._\\-]+', autocapitalize: 'none', spellcheck: 'false' },
    '3 to 64 letters, digits, dots, dashes or underscores.',
  );
  const password = field(
    'su-password',
    'Password',
    { type: 'password', autocomplete: 'new-password', minlength: '8', maxlength: '256' },
    'At least 8 characters; very common passwords are refused.',
  );
  const given = field('su-given', 'Given name', { autocomplete: 'given-name', maxlength: '100' });
  const family = field('su-family', 'Family name', { autocomplete: 'family-name', maxlength: '100' });
  const email = field('su-email', 'E-mail', { type: 'email', autocomplete: 'email' });
  const consents = consentFieldset('su-consent');
  const status = statusLine();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create account');
  const form = h(
    'form',
    { class: 'stack', novalidate: true, 'aria-labelledby': 'signup-title' },
    username.element,
    password.element,
    given.element,
    family.element,
    email.element,
    consents.element,
    h('p', { class: 'hint' }, 'Your name and e-mail are stored encrypted with a key of your own, which is destroyed when you ask us to delete your data.'),
    status.element,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) {
      status.error('Some fields need attention: they are marked above.');
      return;
    }
    const choices = consents.values();
    try {
      await withProgress(submit, 'Creating your account…', async () => {
        status.busy('Creating your account…');
        let response;
        try {
          response = await fetch('/identity/v1/signup', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
            body: JSON.stringify({
              username: username.input.value.trim(),
              password: password.input.value,
              givenName: given.input.value.trim(),
              familyName: family.input.value.trim(),
              email: email.input.value.trim(),
            }),
          });
        } catch {
          throw new UserError('Could not reach examplebank.', 'Check that the server is running, then press "Create account" again.');
        }
        if (!response.ok) {
          let detail = `the server answered ${response.status}`;
          try {
            detail = (await response.json()).detail ?? detail;
          } catch {
            // Keep the status.
          }
          if (response.status === 409) {
            username.input.focus();
            throw new UserError(`That username is taken (${detail}).`, 'Choose another username.');
          }
          throw new UserError(`The account was not created: ${detail}.`, 'Correct it and press "Create account" again.');
        }
        saveChoices({ ...choices, username: username.input.value.trim(), at: Date.now() });
        status.busy('Account created. Opening the login page…');
        await startSignIn('bank', '/#/bank/transactions');
      });
    } catch (error) {
      status.error(describe(error));
    }
  });
  fill(
    root,
    h(
      'div',
      { class: 'bank bank-plain' },
      h(
        'header',
        { class: 'bank-header' },
        h('a', { href: '#/bank', class: 'back' }, '‹ Back'),
        h('h1', { id: 'signup-title', tabindex: '-1' }, 'Create your account'),
      ),
      h(
        'div',
        { class: 'bank-content' },
        isSignedIn('bank') ? h('p', { class: 'status info' }, 'You are signed in already; a new account needs you to sign out first.') : null,
        form,
      ),
    ),
  );
}
