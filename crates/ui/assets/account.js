// The Account screen: who I am, my consents and their history, my data (download, restrict,
// object to profiling, my requests), delete my data, log out. A control whose endpoint the
// server does not offer yet (404/405) says so instead of failing.

import { call, describe, get, isMissing } from './api.js';
import { logout } from './auth.js';
import { resetBankSession } from './bank.js';
import { fill, formatDate, h, statusLine, withProgress } from './dom.js';
import { notify } from './notify.js';
import { POLICY_VERSION, PURPOSES, purposeTitle } from './policy.js';
import { renderJson, renderReceipt } from './render-json.js';

const NOT_YET = 'This is not available yet on this server.';

function card(id, title, ...children) {
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

function profileCard(profile) {
  const name = [profile.givenName, profile.familyName].filter(Boolean).join(' ');
  return card(
    'profile-title',
    'You',
    h(
      'dl',
      { class: 'facts stacked' },
      h('dt', {}, 'Name'),
      h('dd', {}, name || '—'),
      h('dt', {}, 'Username'),
      h('dd', {}, profile.username ?? '—'),
      h('dt', {}, 'E-mail'),
      h('dd', {}, profile.email ?? '—'),
      h('dt', {}, 'Customer since'),
      h('dd', {}, formatDate(profile.registeredAt)),
    ),
  );
}

function historyList(history) {
  if (!Array.isArray(history) || history.length === 0) return h('p', { class: 'muted' }, 'No consent events yet.');
  const events = [...history].sort((a, b) => String(b.at).localeCompare(String(a.at)));
  return h(
    'ol',
    { class: 'history', 'aria-label': 'Consent history, newest first' },
    events.map((e) =>
      h(
        'li',
        {},
        h('span', { class: ['badge', e.granted ? 'granted' : 'withdrawn'] }, e.granted ? 'Given' : 'Withdrawn'),
        h('span', { class: 'history-what' }, purposeTitle(e.purpose)),
        h(
          'span',
          { class: 'hint' },
          h('time', { datetime: String(e.at ?? '') }, formatDate(e.at)),
          ` · ${e.method === 'registration' ? 'at sign-up' : `by ${e.method ?? 'unknown'}`} · notice ${e.policyVersion ?? '?'}`,
          e.policyHash ? ` (SHA-256 ${String(e.policyHash).slice(0, 12)}…)` : '',
        ),
      ),
    ),
  );
}

function consentCard(ctx, profile) {
  const status = statusLine();
  const receipt = h('div', { class: 'receipt-area' });
  const history = h('div', {}, h('p', { class: 'muted' }, 'Loading your consent history…'));
  const switches = {};
  let mode = 'loading';

  const rows = PURPOSES.map((purpose) => {
    const id = `consent-${purpose.id}`;
    const input = h('input', { type: 'checkbox', role: 'switch', id, class: 'switch', 'aria-describedby': `${id}-text ${id}-state`, disabled: true });
    const state = h('p', { id: `${id}-state`, class: 'hint state' });
    switches[purpose.id] = { input, state };
    input.addEventListener('change', () => change(purpose.id));
    return h(
      'div',
      { class: 'switch-row' },
      h('div', { class: 'switch-text' }, h('label', { for: id }, purpose.title), h('p', { id: `${id}-text`, class: 'hint' }, purpose.text), state),
      input,
    );
  });

  const show = (current) => {
    for (const purpose of PURPOSES) {
      const { input, state } = switches[purpose.id];
      const on = Boolean(current?.[purpose.id]);
      input.checked = on;
      const available = mode === 'full' || purpose.id === 'rewards';
      input.disabled = !available;
      state.textContent = `${on ? 'On' : 'Off'}.${available ? '' : ` Changing it: ${NOT_YET.toLowerCase()}`}`;
    }
  };

  const load = async () => {
    try {
      const data = await get('bank', '/bank/v1/users/self/consents');
      mode = 'full';
      show(data?.current);
      fill(history, historyList(data?.history));
    } catch (error) {
      if (ctx.handleSessionError(error)) return;
      if (isMissing(error)) {
        mode = 'legacy';
        show(profile.consents ?? { rewards: profile.consentGiven });
        fill(history, h('p', { class: 'muted not-yet' }, `Consent history: ${NOT_YET}`));
      } else {
        fill(history, h('p', { class: 'status error', role: 'alert' }, describe(error)));
      }
    }
  };

  const change = async (purpose) => {
    const { input } = switches[purpose];
    const granted = input.checked;
    const title = purposeTitle(purpose);
    input.disabled = true;
    fill(receipt);
    status.busy(`${granted ? 'Giving' : 'Withdrawing'} consent: ${title}…`);
    try {
      if (mode === 'full') {
        const { data } = await call('bank', 'PUT', `/bank/v1/users/self/consents/${purpose}`, { json: { granted } });
        status.ok(`${title}: consent ${granted ? 'given' : 'withdrawn'}. Here is your receipt.`);
        if (typeof data?.receipt === 'string') fill(receipt, renderReceipt(data.receipt));
        else if (data && typeof data === 'object') fill(receipt, h('div', { class: 'receipt' }, renderJson(data.receipt ?? data)));
        await load();
      } else {
        await call('bank', 'PUT', '/bank/v1/users/self', { json: { consentGiven: granted } });
        status.ok(`${title}: consent ${granted ? 'given' : 'withdrawn'}.`);
        profile.consents = { ...(profile.consents ?? {}), rewards: granted };
        profile.consentGiven = granted;
        show(profile.consents);
      }
    } catch (error) {
      input.checked = !granted;
      if (ctx.handleSessionError(error)) return;
      status.error(isMissing(error) ? `${title}: ${NOT_YET}` : describe(error));
    } finally {
      input.disabled = !(mode === 'full' || purpose === 'rewards');
    }
  };

  load();
  return card(
    'consent-title',
    'Consent',
    h('p', { class: 'hint' }, `What your data may be used for, one purpose at a time (privacy notice ${POLICY_VERSION}). Withdrawing works for your very next request.`),
    rows,
    status.element,
    receipt,
    h('h3', {}, 'History'),
    history,
  );
}

/** A right that is switched on and off: restriction and objection. */
function rightControl(ctx, profile, spec) {
  const state = h('p', { class: 'state' });
  const button = h('button', { type: 'button', class: 'secondary' });
  const status = statusLine();
  const show = () => {
    const on = Boolean(profile[spec.field]);
    state.textContent = on ? spec.onText : spec.offText;
    button.textContent = on ? spec.stopLabel : spec.startLabel;
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
  };
  button.addEventListener('click', async () => {
    const on = Boolean(profile[spec.field]);
    try {
      await withProgress(button, on ? spec.stopping : spec.starting, async () => {
        await call('bank', on ? 'DELETE' : 'PUT', spec.path);
        profile[spec.field] = !on;
        status.ok(on ? spec.stoppedNews : spec.startedNews);
        spec.afterChange?.();
      });
    } catch (error) {
      if (ctx.handleSessionError(error)) return;
      status.error(isMissing(error) ? `${spec.title}: ${NOT_YET}` : describe(error));
    }
    show();
  });
  show();
  return h('div', { class: 'right' }, h('h3', {}, spec.title), h('p', { class: 'hint' }, spec.explain), state, button, status.element);
}

function requestsArea(ctx) {
  const area = h('div', { class: 'requests' }, h('p', { class: 'muted' }, 'Loading your requests…'));
  const load = async () => {
    try {
      const data = await get('bank', '/bank/v1/users/self/requests');
      const list = Array.isArray(data) ? data : [];
      if (list.length === 0) {
        fill(area, h('p', { class: 'muted' }, 'You have made no requests.'));
        return;
      }
      fill(
        area,
        h(
          'ul',
          { class: 'request-list' },
          list.map((r) =>
            h(
              'li',
              {},
              h('span', { class: 'request-kind' }, String(r.kind ?? 'request')),
              h('span', { class: ['badge', `status-${String(r.status ?? '').replace(/[^a-z-]/g, '')}`] }, String(r.status ?? '')),
              h(
                'span',
                { class: 'hint' },
                `Received ${formatDate(r.receivedAt)}`,
                r.completedAt ? ` · completed ${formatDate(r.completedAt)}` : ` · due by ${formatDate(r.dueAt)}`,
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (ctx.handleSessionError(error)) return;
      fill(area, h('p', { class: isMissing(error) ? 'muted not-yet' : 'status error' }, isMissing(error) ? `My requests: ${NOT_YET}` : describe(error)));
    }
  };
  load();
  return { element: area, reload: load };
}

function downloadControl(ctx, cleanups) {
  const button = h('button', { type: 'button', class: 'secondary', id: 'download-data' }, 'Download my data');
  const status = statusLine();
  const link = h('p', {});
  let url = null;
  cleanups.push(() => url && URL.revokeObjectURL(url));
  button.addEventListener('click', async () => {
    fill(link);
    try {
      await withProgress(button, 'Preparing your data…', async () => {
        status.busy('Collecting everything examplebank holds about you…');
        const { data } = await call('bank', 'GET', '/bank/v1/users/self/export');
        const text = typeof data === 'string' ? data : JSON.stringify(data, null, 2);
        const blob = new Blob([text], { type: 'application/json' });
        if (url) URL.revokeObjectURL(url);
        url = URL.createObjectURL(blob);
        const name = `examplebank-my-data-${new Date().toISOString().slice(0, 10)}.json`;
        const anchor = h('a', { href: url, download: name, class: 'download-link' }, `Save ${name} again`);
        fill(link, anchor);
        anchor.click();
        status.ok(`Your data is ready: ${name} (${Math.max(1, Math.round(blob.size / 1024))} KB), saved to your downloads.`);
      });
    } catch (error) {
      if (ctx.handleSessionError(error)) return;
      status.error(isMissing(error) ? `Downloading your data: ${NOT_YET}` : describe(error));
    }
  });
  return h(
    'div',
    { class: 'right' },
    h('h3', {}, 'Download my data'),
    h('p', { class: 'hint' }, 'Everything examplebank holds about you, as a JSON file you can keep or take elsewhere.'),
    button,
    status.element,
    link,
  );
}

function deleteControl(ctx) {
  const open = h('button', { type: 'button', class: 'danger' }, 'Delete my data');
  const cancel = h('button', { type: 'button', class: 'secondary', autofocus: true }, 'Cancel');
  const confirm = h('button', { type: 'button', class: 'danger' }, 'Yes, delete my data');
  const status = statusLine();
  const dialog = h(
    'dialog',
    { class: 'confirm', 'aria-labelledby': 'delete-title', 'aria-describedby': 'delete-text' },
    h('h2', { id: 'delete-title' }, 'Delete all your data?'),
    h(
      'div',
      { id: 'delete-text' },
      h('p', {}, 'Your account, profile, consent records and points will be deleted, and the key that encrypts your name, e-mail and merchant names will be destroyed, so no copy (backups included) can be read again.'),
      h('p', {}, 'Your transactions stay only as anonymous totals with no link to you. You will be signed out, and this cannot be undone.'),
    ),
    status.element,
    h('div', { class: 'dialog-buttons' }, cancel, confirm),
  );
  open.addEventListener('click', () => {
    status.clear();
    dialog.showModal();
  });
  cancel.addEventListener('click', () => dialog.close());
  confirm.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      const { data } = await withProgress(confirm, 'Sending your request…', () => call('bank', 'POST', '/bank/v1/users/self/erasure'));
      dialog.close();
      await showErasureReceipt(ctx, data ?? {});
    } catch (error) {
      if (ctx.handleSessionError(error)) {
        dialog.close();
        return;
      }
      status.error(describe(error));
    } finally {
      cancel.disabled = false;
    }
  });
  return h(
    'div',
    { class: 'right danger-zone' },
    h('h3', {}, 'Delete my data'),
    h('p', { class: 'hint' }, 'Erases you from examplebank for good. You will see a receipt for your request.'),
    open,
    dialog,
  );
}

async function showErasureReceipt(ctx, receipt) {
  const done = h('a', { href: '#/', class: 'button primary' }, 'Back to the home screen');
  const heading = h('h1', { tabindex: '-1' }, 'Your data is being deleted');
  const facts = h(
    'dl',
    { class: 'facts receipt' },
    h('dt', {}, 'Request'),
    h('dd', { class: 'mono' }, String(receipt.requestId ?? '—')),
    h('dt', {}, 'Received'),
    h('dd', {}, formatDate(receipt.receivedAt)),
    h('dt', {}, 'Scheduled for'),
    h('dd', {}, formatDate(receipt.scheduledFor)),
    h('dt', {}, 'Completed by the latest'),
    h('dd', {}, formatDate(receipt.dueBy)),
  );
  const signedOut = h('p', { class: 'status busy', role: 'status' }, 'Signing you out…');
  ctx.replaceWith(
    h(
      'div',
      { class: 'bank bank-plain erasure-receipt' },
      h('header', { class: 'bank-header' }, heading),
      h(
        'div',
        { class: 'bank-content' },
        h('div', { class: 'receipt-icon', 'aria-hidden': 'true' }),
        h('p', {}, receipt.alreadyPending ? 'You had already asked for this; here is your request again.' : 'We have received your request to delete your data. Keep this receipt.'),
        facts,
        signedOut,
        done,
      ),
    ),
  );
  heading.focus();
  await logout('bank');
  resetBankSession();
  signedOut.className = 'status ok';
  signedOut.textContent = 'You are signed out on this phone. Signing in again will not work once the deletion has run.';
}

function logoutControl() {
  const button = h('button', { type: 'button', class: 'secondary wide' }, 'Log out');
  button.addEventListener('click', async () => {
    const problem = await withProgress(button, 'Signing out…', () => logout('bank'));
      resetBankSession();
    if (problem) {
      notify('warn', 'Bank', `Signed out on this phone, but ${problem}. The session ends by itself when it expires.`);
    } else {
      notify('ok', 'Bank', 'You are signed out.');
    }
    window.location.hash = '#/bank';
  });
  return button;
}

export function renderAccount(content, ctx, profile) {
  const cleanups = [];
  const requests = requestsArea(ctx);
  const reloadRequests = () => requests.reload();
  fill(
    content,
    profileCard(profile),
    consentCard(ctx, profile),
    card(
      'data-title',
      'Your data',
      downloadControl(ctx, cleanups),
      rightControl(ctx, profile, {
        title: 'Restrict processing',
        field: 'restricted',
        path: '/bank/v1/users/self/restriction',
        explain: 'While processing is restricted your data is only stored: new charges are refused and nothing is computed from it.',
        onText: 'Processing is restricted.',
        offText: 'Processing is not restricted.',
        startLabel: 'Restrict processing',
        stopLabel: 'Lift the restriction',
        starting: 'Restricting…',
        stopping: 'Lifting…',
        startedNews: 'Processing is now restricted. New charges are refused until you lift it.',
        stoppedNews: 'The restriction is lifted.',
        afterChange: reloadRequests,
      }),
      rightControl(ctx, profile, {
        title: 'Object to profiling',
        field: 'objectedToProfiling',
        path: '/bank/v1/users/self/objection',
        explain: 'Stops examplebank from computing personal insights from your spending, whatever your consent says.',
        onText: 'You object to profiling.',
        offText: 'You do not object to profiling.',
        startLabel: 'Object to profiling',
        stopLabel: 'Withdraw my objection',
        starting: 'Recording your objection…',
        stopping: 'Withdrawing…',
        startedNews: 'Your objection is recorded: no profiling from now on.',
        stoppedNews: 'Your objection is withdrawn.',
        afterChange: reloadRequests,
      }),
      h('div', { class: 'right' }, h('h3', {}, 'My requests'), requests.element),
      deleteControl(ctx),
    ),
    logoutControl(),
  );
  return () => cleanups.forEach((c) => c());
}
