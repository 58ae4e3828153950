// The admin console (/admin): reward rules, the reward outbox and its parked events, and the
// panels whose endpoints come with other parts of the system (data-subject requests,
// anonymised analytics, audit chain), each shown only when its endpoint answers.

import { call, describe, get, isMissing } from './api.js';
import { isSignedIn, logout, onSessionEnded, resume, SessionEnded, startSignIn } from './auth.js';
import { $, categoryLabel, fill, formatDate, h, statusLine, withProgress } from './dom.js';
import { renderJson } from './render-json.js';

const main = $('#admin');
const who = $('#who');

const OPTIONAL_PANELS = [
  {
    id: 'audit',
    path: '/admin/v1/audit',
    title: 'Audit chain',
    explain: 'Whether the tamper-evident audit log still verifies from start to end.',
    render: auditView,
  },
  {
    id: 'requests',
    path: '/admin/v1/requests',
    title: 'Data-subject requests',
    explain: 'Requests from people (access, erasure, restriction, objection) with the date each must be answered by.',
    render: requestsView,
  },
  {
    id: 'analytics',
    path: '/admin/v1/analytics',
    title: 'Anonymised analytics',
    explain: 'Spending per category and month, from people who consented, in groups of at least five.',
    render: analyticsView,
  },
];

/** The request queue: overdue first (the server's order), one row per request. */
function requestsView(data) {
  if (!Array.isArray(data)) return renderJson(data);
  if (data.length === 0) return h('p', { class: 'muted' }, 'No requests yet.');
  const when = (iso) => (iso ? h('time', { datetime: String(iso) }, formatDate(iso)) : h('span', { class: 'muted' }, '—'));
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Data-subject requests' },
    h(
      'table',
      { class: 'data requests-table' },
      h(
        'thead',
        {},
        h('tr', {}, ['Request', 'Kind', 'Status', 'Received', 'Due by', 'Completed'].map((c) => h('th', { scope: 'col' }, c))),
      ),
      h(
        'tbody',
        {},
        data.map((r) =>
          h(
            'tr',
            { class: r.overdue ? 'overdue' : null },
            h('td', { class: 'mono', title: String(r.id ?? '') }, String(r.id ?? '').slice(0, 8)),
            h('td', {}, String(r.kind ?? '')),
            h('td', {}, h('span', { class: ['badge', r.overdue ? 'late' : `status-${String(r.status ?? '').replace(/[^a-z-]/g, '')}`] }, r.overdue ? 'overdue' : String(r.status ?? ''))),
            h('td', { class: 'when' }, when(r.receivedAt)),
            h('td', { class: 'when' }, when(r.dueAt)),
            h('td', { class: 'when' }, when(r.completedAt)),
          ),
        ),
      ),
    ),
  );
}

/** The audit chain: intact or not, and how much of it was checked. */
function auditView(data) {
  if (!data || typeof data !== 'object' || !('intact' in data)) return renderJson(data);
  const rest = { ...data };
  delete rest.intact;
  delete rest.problem;
  return h(
    'div',
    {},
    data.intact
      ? h('p', { class: 'status ok' }, 'The chain is intact: every entry verifies.')
      : h('p', { class: 'status error', role: 'alert' }, `The chain does not verify: ${data.problem ?? 'unknown problem'}. Investigate before trusting the log.`),
    renderJson(rest),
  );
}

/** Analytics cells as one table: month, category, people, charges and the amount bands. */
function analyticsView(data) {
  if (!data || !Array.isArray(data.cells)) return renderJson(data);
  const bands = Array.isArray(data.bands) ? data.bands.map(String) : [];
  const k = Number(data.minContributors) || 0;
  return h(
    'div',
    {},
    h('p', { class: 'hint' }, `A cell is shown only when at least ${k} people contributed; ${Number(data.suppressedCells) || 0} cell(s) are held back.`),
    data.cells.length === 0
      ? h('p', { class: 'muted' }, 'No cell has enough people yet.')
      : h(
          'div',
          { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Analytics cells' },
          h(
            'table',
            { class: 'data' },
            h(
              'thead',
              {},
              h('tr', {}, ['Month', 'Category', 'People', 'Charges', ...bands].map((c) => h('th', { scope: 'col' }, c))),
            ),
            h(
              'tbody',
              {},
              data.cells.map((cell) =>
                h(
                  'tr',
                  {},
                  h('td', {}, String(cell.month ?? '')),
                  h('td', {}, categoryLabel(cell.category)),
                  h('td', { class: 'num' }, String(cell.contributors ?? '')),
                  h('td', { class: 'num' }, String(cell.transactions ?? '')),
                  bands.map((_, i) => h('td', { class: 'num' }, String(cell.bands?.[i] ?? ''))),
                ),
              ),
            ),
          ),
        ),
  );
}

function panel(id, title, ...children) {
  return h('section', { class: 'panel', id: `panel-${id}`, 'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), ...children);
}

function loading(text) {
  return h('p', { class: 'status busy', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

function failure(error) {
  if (error instanceof SessionEnded || !isSignedIn('admin')) {
    renderSignedOut(describe(error));
    return null;
  }
  return h('p', { class: 'status error', role: 'alert' }, describe(error));
}

function rulesPanel() {
  const body = h('div', {}, loading('Loading reward rules…'));
  const status = statusLine();
  const load = async () => {
    try {
      const rules = await get('admin', '/admin/v1/reward-rules');
      const rows = (Array.isArray(rules) ? rules : []).slice().sort((a, b) => String(a.category).localeCompare(String(b.category)));
      fill(
        body,
        h(
          'table',
          { class: 'data rules' },
          h('caption', { class: 'visually-hidden' }, 'Reward rules'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Category'), h('th', { scope: 'col' }, 'Points per whole unit'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Action')))),
          h('tbody', {}, rows.map((rule) => ruleRow(rule, status))),
        ),
      );
    } catch (error) {
      const node = failure(error);
      if (node) fill(body, node);
    }
  };
  load();
  return {
    element: panel(
      'rules',
      'Reward rules',
      h('p', { class: 'hint' }, 'Points a charge earns per whole currency unit, by category (0 to 100), rounded down per transaction. A change applies to charges rewarded from now on.'),
      body,
      status.element,
    ),
    reload: load,
  };
}

function ruleRow(rule, status) {
  const category = String(rule.category);
  const id = `rule-${category.replace(/[^a-z0-9-]/gi, '')}`;
  const input = h('input', { type: 'number', id, min: '0', max: '100', step: '1', inputmode: 'numeric', value: String(rule.pointsPerUnit), 'aria-label': `Points per whole unit for ${categoryLabel(category)}` });
  const save = h('button', { type: 'button', class: 'secondary', 'aria-label': `Save the rule for ${categoryLabel(category)}` }, 'Save');
  const submit = async () => {
    const value = Number(input.value);
    if (!Number.isInteger(value) || value < 0 || value > 100) {
      status.error(`${categoryLabel(category)}: enter a whole number from 0 to 100.`);
      input.focus();
      return;
    }
    try {
      await withProgress(save, 'Saving…', () =>
        call('admin', 'PUT', `/admin/v1/reward-rules/${encodeURIComponent(category)}`, { json: { pointsPerUnit: value } }),
      );
      status.ok(`${categoryLabel(category)} now earns ${value} ${value === 1 ? 'point' : 'points'} per whole unit.`);
    } catch (error) {
      const node = failure(error);
      if (node) status.error(`${categoryLabel(category)}: ${describe(error)}`);
    }
  };
  save.addEventListener('click', submit);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      submit();
    }
  });
  return h('tr', { dataset: { category } }, h('th', { scope: 'row' }, h('label', { for: id }, categoryLabel(category))), h('td', {}, input), h('td', {}, save));
}

function outboxPanel() {
  const body = h('div', {}, loading('Loading the outbox…'));
  const load = async () => {
    try {
      const data = await get('admin', '/admin/v1/outbox');
      const age = data.oldestPendingAgeSeconds;
      fill(
        body,
        h(
          'dl',
          { class: 'stats' },
          h('div', {}, h('dt', {}, 'Waiting'), h('dd', {}, String(data.pending ?? 0))),
          h('div', {}, h('dt', {}, 'Parked'), h('dd', { class: Number(data.parked) > 0 ? 'alarm' : null }, String(data.parked ?? 0))),
          h('div', {}, h('dt', {}, 'Oldest waiting'), h('dd', {}, age === null || age === undefined ? '—' : `${age} s`)),
        ),
        h('h3', {}, 'Parked events'),
        Array.isArray(data.parkedEvents) && data.parkedEvents.length > 0
          ? renderJson(data.parkedEvents)
          : h('p', { class: 'muted' }, 'No parked events: every reward event was processed or is being retried.'),
      );
    } catch (error) {
      const node = failure(error);
      if (node) fill(body, node);
    }
  };
  load();
  return {
    element: panel('outbox', 'Reward outbox', h('p', { class: 'hint' }, 'Events waiting for the reward worker, and events it gave up on (parked) with the reason.'), body),
    reload: load,
  };
}

function optionalPanel(spec, container) {
  const body = h('div', {});
  const element = panel(spec.id, spec.title, h('p', { class: 'hint' }, spec.explain), body);
  element.hidden = true;
  container.append(element);
  const load = async () => {
    try {
      const data = await get('admin', spec.path);
      fill(body, spec.render ? spec.render(data) : renderJson(data));
      element.hidden = false;
    } catch (error) {
      if (isMissing(error)) {
        // Not on this server (yet): no panel.
        element.hidden = true;
        return;
      }
      const node = failure(error);
      if (node) {
        fill(body, node);
        element.hidden = false;
      }
    }
  };
  load();
  return { element, reload: load };
}

function renderConsole() {
  const refresh = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
  const out = h('button', { type: 'button', class: 'secondary' }, 'Log out');
  fill(who, h('span', { class: 'who-text' }, 'Signed in as an administrator'), refresh, out);
  const grid = h('div', { class: 'panels' });
  const rules = rulesPanel();
  const outbox = outboxPanel();
  grid.append(rules.element, outbox.element);
  const optional = OPTIONAL_PANELS.map((spec) => optionalPanel(spec, grid));
  fill(main, h('h1', { tabindex: '-1' }, 'Admin console'), grid);
  refresh.addEventListener('click', () =>
    withProgress(refresh, 'Refreshing…', () => Promise.all([rules.reload(), outbox.reload(), ...optional.map((p) => p.reload())])),
  );
  out.addEventListener('click', async () => {
    const problem = await withProgress(out, 'Signing out…', () => logout('admin'));
    renderSignedOut(problem ? `Signed out here, but ${problem}. The session ends by itself when it expires.` : 'You are signed out.');
  });
}

function renderSignedOut(message) {
  fill(who);
  const signIn = h('button', { type: 'button', class: 'primary' }, 'Sign in as administrator');
  const status = statusLine();
  signIn.addEventListener('click', async () => {
    try {
      await withProgress(signIn, 'Opening the login page…', () => startSignIn('admin', '/admin'));
    } catch (error) {
      status.error(describe(error));
    }
  });
  fill(
    main,
    h(
      'section',
      { class: 'panel sign-in' },
      h('h1', { tabindex: '-1' }, 'Admin console'),
      message ? h('p', { class: 'status info', role: 'status' }, message) : null,
      h('p', {}, 'Sign in with an administrator account. Administrators are created on the server with ', h('code', {}, 'examplebank admin create NAME'), ' (the password is read from standard input).'),
      signIn,
      status.element,
    ),
  );
}

resume('admin');
onSessionEnded((app) => {
  if (app === 'admin') renderSignedOut('Your session has ended. Sign in again.');
});
if (isSignedIn('admin')) renderConsole();
else renderSignedOut();
