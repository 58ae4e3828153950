// The phone: a home screen of app tiles (the Bank app and merchants that charge the card),
// notifications, and the Bank app. Screens are addressed by the URL fragment (#/, #/bank/…),
// so the browser's back button and bookmarks work.

import { ApiError, call, describe, newIdempotencyKey } from './api.js';
import { isSignedIn, onSessionEnded, resume, SessionEnded } from './auth.js';
import { renderBank, resetBankSession } from './bank.js';
import { pick, randomInt } from './crypto-util.js';
import { $, categoryLabel, fill, formatMoney, h, toAmount } from './dom.js';
import { dismissAll, mountNotifications, notify } from './notify.js';

/** Merchant apps: each charges a random amount (whole cents) in its category. */
export const MERCHANTS = [
  { id: 'rides', label: 'Ride share', category: 'transport', icon: 'car', min: 650, max: 4500, names: ['Swift Rides', 'CityHop Ride Share', 'Northside Cabs'] },
  { id: 'cafe', label: 'Cafe', category: 'coffee', icon: 'cup', min: 350, max: 1250, names: ['Bean There Café', 'The Daily Grind', 'Corner Espresso'] },
  { id: 'groceries', label: 'Groceries', category: 'groceries', icon: 'cart', min: 1200, max: 6000, names: ['Fresh Market', 'Green Basket Grocers', 'Harbour Foods'] },
  { id: 'food', label: 'Food delivery', category: 'dining', icon: 'bowl', min: 1100, max: 5500, names: ['Noodle Express', 'Pizza Piazza Delivery', 'Curry Corner'] },
  { id: 'fuel', label: 'Fuel', category: 'fuel', icon: 'fuel', min: 2500, max: 6000, names: ['Ridgeway Fuel', 'Motorway Services', 'Parkside Petrol'] },
  { id: 'cinema', label: 'Cinema', category: 'entertainment', icon: 'film', min: 900, max: 3200, names: ['Regent Cinema', 'Starlight Pictures'] },
  { id: 'shop', label: 'Shopping', category: 'shopping', icon: 'bag', min: 800, max: 6000, names: ['Lane & Co', 'The Book Nook', 'Urban Outfit'] },
  { id: 'pharmacy', label: 'Pharmacy', category: 'health', icon: 'cross', min: 400, max: 3500, names: ['Wellbeing Pharmacy', 'Green Cross Chemist'] },
];

const REFUSALS = {
  'no-consent': ['Card declined', 'You have not consented to the rewards programme, so the bank refuses charges. Turn on "Rewards programme" in Bank › Account, then try again.'],
  restricted: ['Card declined', 'You have restricted the processing of your data, so the bank refuses new charges. Lift the restriction in Bank › Account to pay again.'],
  'erasure-pending': ['Card declined', 'Your data is being erased, so the card no longer accepts charges.'],
};

function explainRefusal(error) {
  if (error instanceof SessionEnded) {
    return ['Not signed in', `${describe(error)} Open the Bank app to sign in.`];
  }
  if (error instanceof ApiError) {
    if (REFUSALS[error.kind]) return REFUSALS[error.kind];
    if (error.status === 404) {
      return ['Not registered', 'The bank does not know you yet: open the Bank app to finish setting up your account, then try again.'];
    }
    if (error.status === 403) {
      return ['Card declined', 'This account is not a bank customer (administrators cannot pay). Sign in with a personal account.'];
    }
    if (error.status === 0) return ['No connection', describe(error)];
  }
  return ['Payment failed', describe(error)];
}

async function charge(merchant, tile) {
  if (!isSignedIn('bank')) {
    dismissAll();
    notify('error', merchant.label, 'You are not signed in, so there is no card to charge. Open the Bank app and sign in first.', { icon: merchant.icon });
    return;
  }
  const cents = randomInt(merchant.min, merchant.max);
  const name = pick(merchant.names);
  const amount = toAmount(cents);
  dismissAll();
  const banner = notify('busy', merchant.label, `Paying ${formatMoney(cents)} at ${name}…`, { icon: merchant.icon });
  tile.setAttribute('aria-busy', 'true');
  try {
    await call('bank', 'POST', '/bank/v1/transactions', {
      json: { transactionName: name, category: merchant.category, amount },
      idempotencyKey: newIdempotencyKey(),
    });
    banner.update('ok', merchant.label, `Paid ${formatMoney(cents)} at ${name} (${categoryLabel(merchant.category)}). Your points are on their way.`);
  } catch (error) {
    if (error instanceof SessionEnded) resetBankSession();
    const [title, text] = explainRefusal(error);
    banner.update('error', `${merchant.label}: ${title}`, text);
  } finally {
    tile.removeAttribute('aria-busy');
  }
}

function tile({ label, icon, href, onClick, id }) {
  const attrs = { class: 'tile', id: `tile-${id}`, dataset: { app: id } };
  const content = [h('span', { class: ['tile-icon', `icon-${icon}`], 'aria-hidden': 'true' }), h('span', { class: 'tile-label' }, label)];
  if (href) return h('li', {}, h('a', { ...attrs, href }, content));
  const button = h('button', { ...attrs, type: 'button' }, content);
  button.addEventListener('click', () => onClick(button));
  return h('li', {}, button);
}

function renderHome(root) {
  const signedIn = isSignedIn('bank');
  fill(
    root,
    h(
      'div',
      { class: 'home' },
      h('h1', { class: 'visually-hidden', tabindex: '-1' }, 'Home screen'),
      h(
        'div',
        { class: ['card-widget', signedIn ? 'signed-in' : 'signed-out'] },
        h('span', { class: 'card-brand' }, 'examplebank rewards card'),
        h('span', { class: 'card-number', 'aria-hidden': 'true' }, '•••• •••• •••• 2026'),
        h(
          'p',
          { class: 'home-hint' },
          signedIn ? 'Signed in. Tap a shop to pay with your card.' : 'Not signed in. Open the Bank app to sign in, then tap a shop to pay.',
        ),
      ),
      h(
        'ul',
        { class: 'tiles', 'aria-label': 'Apps' },
        tile({ id: 'bank', label: 'Bank', icon: 'bank', href: '#/bank' }),
        MERCHANTS.map((m) =>
          tile({ id: m.id, label: m.label, icon: m.icon, onClick: (button) => charge(m, button) }),
        ),
      ),
      h('p', { class: 'dock-note' }, 'Charges are simulated: amounts are random, in whole cents.'),
    ),
  );
}

// ---- Router ----

const screen = $('#screen');
let cleanup = null;

function route() {
  cleanup?.();
  cleanup = null;
  const [, app = '', page = ''] = (window.location.hash || '#/').split('/');
  if (app === 'bank') {
    cleanup = renderBank(screen, page);
  } else {
    renderHome(screen);
  }
  screen.scrollTop = 0;
  // After a change of screen, keyboard and screen-reader users land on its title.
  if (route.started) screen.querySelector('h1')?.focus({ preventScroll: true });
  route.started = true;
}

function startClock() {
  const clock = $('#clock');
  const tick = () => {
    clock.textContent = new Date().toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  };
  tick();
  setInterval(tick, 15_000);
}

/** Signing in only works on the address the server knows itself by. */
async function checkOrigin() {
  try {
    const response = await fetch('/.well-known/openid-configuration', { headers: { Accept: 'application/json' } });
    if (!response.ok) return;
    const { issuer } = await response.json();
    if (issuer && issuer.replace(/\/+$/, '') !== window.location.origin) {
      notify('warn', 'Open the right address', `examplebank knows itself as ${issuer}, but this page is open at ${window.location.origin}. Signing in only works at ${issuer}; open that address instead.`);
    }
  } catch {
    // The first request will say if the server cannot be reached.
  }
}

mountNotifications($('#notifications'));
resume('bank');
onSessionEnded((app) => {
  if (app !== 'bank') return;
  resetBankSession();
  notify('warn', 'Bank', 'Your session has ended, so you are signed out. Open the Bank app to sign in again.');
});
$('#home-button').addEventListener('click', () => {
  window.location.hash = '#/';
});
window.addEventListener('hashchange', route);
startClock();
route();
checkOrigin();
