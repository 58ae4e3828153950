// The Bank app on the phone: welcome (sign in / create an account), finishing registration
// with the person's consent choices, transactions (live while any is pending), spending as a
// chart, points and redemption. The account screen lives in account.js.

import { renderAccount } from './account.js';
import { ApiError, call, describe, get, isMissing, newIdempotencyKey } from './api.js';
import { isSignedIn, SessionEnded, startSignIn } from './auth.js';
import {
  categoryClass,
  categoryLabel,
  fill,
  formatDate,
  formatMoney,
  formatPoints,
  h,
  parseMinor,
  statusLine,
  svg,
  withProgress,
} from './dom.js';
import { notify } from './notify.js';
import { purposeTitle } from './policy.js';
import { clearChoices, consentFieldset, readChoices, renderSignup } from './signup.js';

const POLL_MS = 1500;

const TABS = [
  { id: 'transactions', label: 'Transactions', icon: 'list' },
  { id: 'spending', label: 'Spending', icon: 'chart' },
  { id: 'points', label: 'Points', icon: 'star' },
  { id: 'account', label: 'Account', icon: 'person' },
];

// ---- Registration: once per sign-in, applying the choices made at sign-up. ----

let registration = null;

/** Forget what is known about the signed-in person (after logout or erasure). */
export function resetBankSession() {
  registration = null;
}

/** The person's profile, registering them first if they just signed up; null when they must choose. */
export function ensureRegistered() {
  if (!registration) {
    registration = loadOrRegister();
    registration.catch(() => {
      registration = null;
    });
  }
  return registration;
}

export async function reloadProfile() {
  registration = get('bank', '/bank/v1/users/self');
  registration.catch(() => {
    registration = null;
  });
  return registration;
}

async function loadOrRegister() {
  try {
    return await get('bank', '/bank/v1/users/self');
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  const choices = readChoices();
  if (!choices) return null;
  if (choices.username) {
    // The choices belong to whoever signed up in this tab; someone else signing in chooses anew.
    try {
      const info = await get('bank', '/identity/v1/userinfo');
      if (String(info?.preferred_username ?? '').toLowerCase() !== choices.username.toLowerCase()) {
        clearChoices();
        return null;
      }
    } catch {
      // Userinfo is a convenience here; the choices were made in this very tab.
    }
  }
  await register(choices);
  clearChoices();
  return get('bank', '/bank/v1/users/self');
}

/** POST /bank/v1/users with the rewards choice, then the other purposes one by one. */
async function register(choices) {
  try {
    await call('bank', 'POST', '/bank/v1/users', { json: { consentGiven: Boolean(choices.rewards) } });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error;
  }
  const saved = [choices.rewards ? 'rewards on' : 'rewards off'];
  const missing = [];
  const failed = [];
  for (const purpose of ['analytics', 'profiling']) {
    if (!choices[purpose]) continue;
    try {
      await call('bank', 'PUT', `/bank/v1/users/self/consents/${purpose}`, { json: { granted: true } });
      saved.push(`${purpose} on`);
    } catch (error) {
      if (isMissing(error)) missing.push(purposeTitle(purpose).toLowerCase());
      else failed.push(`${purposeTitle(purpose)}: ${describe(error)}`);
    }
  }
  let text = `You are registered. Your choices were saved: ${saved.join(', ')}.`;
  if (missing.length) {
    text += ` Consent to ${missing.join(' and ')} is not available yet on this server, so it was not recorded; you can turn it on in Account once it is.`;
  }
  if (failed.length) text += ` Not saved: ${failed.join(' ')}`;
  notify(missing.length || failed.length ? 'warn' : 'ok', 'Welcome to examplebank', text, { timeout: missing.length || failed.length ? 0 : 10000 });
}

// ---- Screens ----

function errorBox(error, retry) {
  return h(
    'div',
    { class: 'status error', role: 'alert' },
    h('p', {}, describe(error)),
    retry ? h('button', { type: 'button', class: 'secondary', onclick: retry }, 'Try again') : null,
  );
}

function loading(text) {
  return h('p', { class: 'status busy', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

function renderWelcome(root, message) {
  const signIn = h('button', { type: 'button', class: 'primary' }, 'Sign in');
  const status = statusLine();
  signIn.addEventListener('click', async () => {
    try {
      await withProgress(signIn, 'Opening the login page…', () => startSignIn('bank', '/#/bank/transactions'));
    } catch (error) {
      status.error(describe(error));
    }
  });
  fill(
    root,
    h(
      'div',
      { class: 'bank bank-plain welcome' },
      h('header', { class: 'bank-header' }, h('a', { href: '#/', class: 'back' }, '‹ Home'), h('h1', { tabindex: '-1' }, 'Bank')),
      h(
        'div',
        { class: 'bank-content' },
        h('div', { class: 'welcome-logo icon-bank', 'aria-hidden': 'true' }),
        h('h2', {}, 'Welcome to examplebank'),
        message ? h('p', { class: 'status info', role: 'status' }, message) : null,
        h('p', {}, 'Sign in on examplebank’s own login page. This app never sees your password.'),
        signIn,
        h('a', { href: '#/bank/signup', class: 'button secondary' }, 'Create an account'),
        status.element,
      ),
    ),
  );
}

function renderSetup(root, onDone) {
  const consents = consentFieldset('setup-consent');
  const status = statusLine();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Save my choices');
  const form = h('form', { class: 'stack' }, consents.element, status.element, submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await withProgress(submit, 'Saving your choices…', async () => {
        await register(consents.values());
        resetBankSession();
        await ensureRegistered();
      });
      onDone();
    } catch (error) {
      status.error(describe(error));
    }
  });
  fill(
    root,
    h('h2', {}, 'One more step'),
    h('p', {}, 'Your login works. Before the bank opens your account, choose what your data may be used for.'),
    form,
  );
}

function parseNextLink(header) {
  const match = /<([^>]+)>\s*;\s*rel="next"/.exec(header ?? '');
  return match && match[1].startsWith('/bank/v1/transactions?') ? match[1] : null;
}

function transactionItem(t) {
  const cents = parseMinor(t.amount);
  const name = t.transactionName ?? 'Merchant not available';
  return h(
    'li',
    { class: 'tx', dataset: { id: String(t.transactionId ?? '') } },
    h('span', { class: ['tx-icon', `cat-${categoryClass(t.category)}`], 'aria-hidden': 'true' }),
    h(
      'div',
      { class: 'tx-main' },
      h('span', { class: 'tx-name' }, name),
      h('span', { class: 'tx-meta' }, `${categoryLabel(t.category)} · `, h('time', { datetime: String(t.date ?? '') }, formatDate(t.date))),
    ),
    h(
      'div',
      { class: 'tx-side' },
      h('span', { class: 'tx-amount' }, cents === null ? String(t.amount) : formatMoney(cents)),
      t.processed
        ? h('span', { class: 'tx-points' }, `+${Number(t.pointsEarned) || 0} pts`)
        : h('span', { class: 'badge pending', title: 'Points are being worked out' }, 'Pending'),
    ),
  );
}

function transactionsScreen(content, ctx) {
  const list = h('ul', { class: 'tx-list', 'aria-label': 'Transactions, newest first' });
  const live = h('p', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Show older transactions');
  const area = h('div', {}, loading('Loading your transactions…'));
  let items = [];
  let next = null;
  let timer = null;
  let pendingBefore = 0;

  const render = () => {
    if (items.length === 0) {
      fill(area, h('p', { class: 'empty' }, 'No transactions yet. Go to the home screen and tap a shop to pay with your card.'));
      return;
    }
    fill(list, items.map(transactionItem));
    fill(area, list);
    more.hidden = !next;
  };

  const load = async () => {
    timer = null;
    try {
      const { data, headers } = await call('bank', 'GET', '/bank/v1/transactions?limit=50');
      if (!ctx.alive()) return;
      const first = Array.isArray(data) ? data : [];
      const seen = new Set(first.map((t) => t.transactionId));
      // Keep older pages the person opened; the first page replaces its own entries.
      const older = items.slice(first.length).filter((t) => !seen.has(t.transactionId));
      items = [...first, ...older];
      if (!next || older.length === 0) next = parseNextLink(headers.get('Link'));
      render();
      ctx.refreshPoints();
      const pending = items.filter((t) => !t.processed).length;
      if (pendingBefore > 0 && pending === 0) live.textContent = 'All transactions have their points.';
      pendingBefore = pending;
      if (pending > 0) timer = setTimeout(load, POLL_MS);
    } catch (error) {
      if (!ctx.alive()) return;
      if (ctx.handleSessionError(error)) return;
      fill(area, errorBox(error, () => {
        fill(area, loading('Loading your transactions…'));
        load();
      }));
    }
  };

  more.addEventListener('click', async () => {
    if (!next) return;
    try {
      await withProgress(more, 'Loading…', async () => {
        const { data, headers } = await call('bank', 'GET', next);
        items = [...items, ...(Array.isArray(data) ? data : [])];
        next = parseNextLink(headers.get('Link'));
        render();
      });
    } catch (error) {
      if (!ctx.handleSessionError(error)) notify('error', 'Bank', describe(error));
    }
  });

  fill(content, live, area, more);
  load();
  return () => clearTimeout(timer);
}

function spendingChart(rows) {
  const width = 340;
  const labelWidth = 104;
  const valueWidth = 84;
  const rowHeight = 34;
  const barHeight = 20;
  const top = 4;
  const height = top * 2 + rows.length * rowHeight;
  const max = Math.max(...rows.map((r) => r.cents), 1);
  const barSpace = width - labelWidth - valueWidth;
  const summary = rows.map((r) => `${categoryLabel(r.category)} ${formatMoney(r.cents)}`).join(', ');
  return svg(
    'svg',
    {
      class: 'chart',
      viewBox: `0 0 ${width} ${height}`,
      width: '100%',
      role: 'img',
      'aria-labelledby': 'chart-title chart-desc',
      preserveAspectRatio: 'xMinYMin meet',
    },
    svg('title', { id: 'chart-title' }, 'Spending by category'),
    svg('desc', { id: 'chart-desc' }, summary),
    rows.map((row, i) => {
      const y = top + i * rowHeight;
      const barWidth = Math.max(3, Math.round((row.cents / max) * barSpace));
      return svg(
        'g',
        { class: 'chart-row', dataset: { category: row.category } },
        svg('text', { x: 0, y: y + barHeight / 2 + 5, class: 'chart-label' }, categoryLabel(row.category)),
        svg('rect', {
          x: labelWidth,
          y,
          width: barWidth,
          height: barHeight,
          rx: 4,
          class: ['bar', `cat-${categoryClass(row.category)}`],
        }),
        svg('text', { x: labelWidth + barWidth + 6, y: y + barHeight / 2 + 5, class: 'chart-value' }, formatMoney(row.cents)),
      );
    }),
  );
}

/** Personal insights: profiling, so shown only with consent and without objection or restriction. */
function insightsCard(ctx) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Looking for insights…'));
  const card = h('section', { class: 'card insights', 'aria-labelledby': 'insights-title' }, h('h2', { id: 'insights-title' }, 'Insights'), body);
  (async () => {
    try {
      const data = await get('bank', '/bank/v1/users/self/insights');
      if (!ctx.alive()) return;
      const list = Array.isArray(data?.insights) ? data.insights : [];
      fill(
        body,
        list.length === 0
          ? h('p', { class: 'muted' }, 'No insights yet: they appear once you have made some charges.')
          : h('ul', { class: 'insight-list' }, list.map((i) => h('li', {}, String(i.text ?? i.kind ?? '')))),
        h('p', { class: 'hint' }, `Computed for you alone from ${Number(data?.basedOnTransactions) || 0} transactions, because you consented to profiling.`),
      );
    } catch (error) {
      if (!ctx.alive() || ctx.handleSessionError(error)) return;
      if (isMissing(error)) {
        card.hidden = true;
      } else if (error instanceof ApiError && error.status === 409) {
        fill(body, h('p', { class: 'muted' }, `No insights: ${error.message}.`), h('p', { class: 'hint' }, 'Insights are optional; you can change this in Account.'));
      } else {
        fill(body, h('p', { class: 'status error' }, describe(error)));
      }
    }
  })();
  return card;
}

function spendingScreen(content, ctx) {
  const area = h('div', {}, loading('Adding up your spending…'));
  fill(content, area, insightsCard(ctx));
  const load = async () => {
    try {
      const data = await get('bank', '/bank/v1/transactions/spending');
      if (!ctx.alive()) return;
      const rows = (Array.isArray(data) ? data : [])
        .map((r) => ({ category: String(r.category), amount: String(r.amount), cents: parseMinor(r.amount) ?? 0 }))
        .sort((a, b) => b.cents - a.cents || a.category.localeCompare(b.category));
      if (rows.length === 0) {
        fill(area, h('p', { class: 'empty' }, 'Nothing spent yet. Tap a shop on the home screen to make a charge.'));
        return;
      }
      const total = rows.reduce((sum, r) => sum + r.cents, 0);
      fill(
        area,
        h('p', { class: 'total' }, 'Total spent ', h('strong', {}, formatMoney(total))),
        h('figure', { class: 'chart-figure' }, spendingChart(rows), h('figcaption', { class: 'hint' }, 'Each bar is one category; the longest is where you spent most.')),
        h(
          'table',
          { class: 'data spending-table' },
          h('caption', {}, 'Spending by category'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Category'), h('th', { scope: 'col', class: 'num' }, 'Amount'), h('th', { scope: 'col', class: 'num' }, 'Share'))),
          h(
            'tbody',
            {},
            rows.map((r) =>
              h(
                'tr',
                { dataset: { category: r.category } },
                h('th', { scope: 'row' }, h('span', { class: ['swatch', `cat-${categoryClass(r.category)}`], 'aria-hidden': 'true' }), categoryLabel(r.category)),
                h('td', { class: 'num amount' }, formatMoney(r.cents)),
                h('td', { class: 'num' }, `${Math.round((r.cents * 100) / total)}%`),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (!ctx.alive() || ctx.handleSessionError(error)) return;
      fill(area, errorBox(error, () => {
        fill(area, loading('Adding up your spending…'));
        load();
      }));
    }
  };
  load();
}

function pointsScreen(content, ctx) {
  const balance = h('p', { class: 'points-balance', 'aria-live': 'polite' }, '…');
  const details = h('p', { class: 'hint' });
  const input = h('input', { id: 'redeem-points', type: 'number', min: '1', step: '1', inputmode: 'numeric', required: true, 'aria-describedby': 'redeem-hint' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Redeem points');
  const status = statusLine();
  let attempt = null;

  const load = async () => {
    try {
      const data = await get('bank', '/bank/v1/points');
      if (!ctx.alive()) return;
      fill(balance, h('strong', {}, formatPoints(data.balance)));
      fill(details, `Earned ${formatPoints(data.earned)}, redeemed ${formatPoints(data.redeemed)}.`);
      input.max = String(Math.max(1, Number(data.balance) || 0));
      ctx.setPoints(data.balance);
    } catch (error) {
      if (!ctx.alive() || ctx.handleSessionError(error)) return;
      status.error(describe(error));
    }
  };

  const form = h(
    'form',
    { class: 'stack redeem' },
    h('label', { for: 'redeem-points', class: 'block' }, 'Points to redeem'),
    h('p', { id: 'redeem-hint', class: 'hint' }, 'Whole points, up to your balance. Pressing twice never redeems twice.'),
    input,
    status.element,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const points = Number(input.value);
    if (!Number.isInteger(points) || points < 1) {
      status.error('Enter a whole number of points, 1 or more.');
      input.focus();
      return;
    }
    // A retry after a lost answer reuses the key, so the server answers it once only.
    if (!attempt || attempt.points !== points || attempt.done) attempt = { points, key: newIdempotencyKey(), done: false };
    try {
      await withProgress(submit, 'Redeeming…', async () => {
        status.busy(`Redeeming ${formatPoints(points)}…`);
        const { data } = await call('bank', 'POST', '/bank/v1/points/redemptions', { json: { points }, idempotencyKey: attempt.key });
        attempt.done = true;
        status.ok(`Redeemed ${formatPoints(data.points)}. Your balance is now ${formatPoints(data.balance)}. Reference ${data.redemptionId}.`);
        form.reset();
        await load();
      });
    } catch (error) {
      if (error instanceof ApiError && error.status !== 0) attempt.done = true;
      if (ctx.handleSessionError(error)) return;
      status.error(describe(error));
    }
  });

  fill(
    content,
    h('section', { class: 'card', 'aria-labelledby': 'points-title' }, h('h2', { id: 'points-title' }, 'Your points'), balance, details),
    h('section', { class: 'card', 'aria-labelledby': 'redeem-title' }, h('h2', { id: 'redeem-title' }, 'Redeem'), form),
  );
  load();
}

/**
 * Renders the Bank app at `page` (signup, transactions, spending, points, account). Returns a
 * cleanup function that stops polling when the person leaves the screen.
 */
export function renderBank(root, page, { message } = {}) {
  if (page === 'signup') {
    renderSignup(root);
    return null;
  }
  if (!isSignedIn('bank')) {
    renderWelcome(root, message);
    return null;
  }
  const tab = TABS.find((t) => t.id === page) ?? TABS[0];
  let alive = true;
  const cleanups = [];
  const title = h('h1', { tabindex: '-1' }, tab.label);
  const chip = h('a', { href: '#/bank/points', class: 'points-chip', 'aria-label': 'Points balance' }, '… pts');
  const content = h('div', { class: 'bank-content' }, loading('Opening your account…'));
  const nav = h(
    'nav',
    { class: 'tabbar', 'aria-label': 'Bank sections' },
    TABS.map((t) =>
      h(
        'a',
        { href: `#/bank/${t.id}`, class: 'tab', 'aria-current': t.id === tab.id ? 'page' : null },
        h('span', { class: ['tab-icon', `icon-${t.icon}`], 'aria-hidden': 'true' }),
        t.label,
      ),
    ),
  );
  fill(
    root,
    h('div', { class: 'bank' }, h('header', { class: 'bank-header' }, h('a', { href: '#/', class: 'back' }, '‹ Home'), title, chip), content, nav),
  );

  const ctx = {
    alive: () => alive,
    setPoints(balance) {
      chip.textContent = `${Number(balance) || 0} pts`;
      chip.setAttribute('aria-label', `Points balance: ${formatPoints(balance)}`);
    },
    async refreshPoints() {
      try {
        const data = await get('bank', '/bank/v1/points');
        if (alive) ctx.setPoints(data.balance);
      } catch {
        // The chip keeps its last value; the screen reports its own failures.
      }
    },
    /** Sends the person back to the welcome screen when their session is gone. */
    handleSessionError(error) {
      if (error instanceof SessionEnded || !isSignedIn('bank')) {
        resetBankSession();
        if (alive) renderBank(root, page, { message: describe(error) });
        return true;
      }
      return false;
    },
    /** Replaces the whole app (used by erasure to show its receipt). */
    replaceWith(...nodes) {
      alive = false;
      fill(root, ...nodes);
    },
  };

  const start = async () => {
    let profile;
    try {
      profile = await ensureRegistered();
    } catch (error) {
      if (!alive || ctx.handleSessionError(error)) return;
      fill(content, errorBox(error, start));
      return;
    }
    if (!alive) return;
    if (!profile) {
      title.textContent = 'Finish setting up';
      nav.hidden = true;
      renderSetup(content, () => renderBank(root, page));
      return;
    }
    ctx.refreshPoints();
    if (tab.id === 'transactions') cleanups.push(transactionsScreen(content, ctx));
    if (tab.id === 'spending') spendingScreen(content, ctx);
    if (tab.id === 'points') pointsScreen(content, ctx);
    if (tab.id === 'account') cleanups.push(renderAccount(content, ctx, profile));
  };
  start();
  return () => {
    alive = false;
    cleanups.forEach((c) => c?.());
  };
}
