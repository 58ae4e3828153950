// Shows any JSON value as text: objects as term/value lists, arrays of objects as tables,
// everything else as text. Used for answers whose exact shape belongs to another part of the
// system (receipts, admin panels); nothing in them is ever treated as markup.

import { formatDate, h } from './dom.js';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** "oldestPendingAgeSeconds" → "Oldest pending age seconds". */
export function humanKey(key) {
  const words = String(key)
    .replace(/_/g, ' ')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function scalar(value) {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, '—');
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string' && ISO_TIME.test(value)) {
    return h('time', { datetime: value }, formatDate(value));
  }
  return String(value);
}

export function renderJson(value, depth = 0) {
  if (Array.isArray(value)) {
    if (value.length === 0) return h('p', { class: 'muted' }, 'None.');
    if (value.every((v) => v && typeof v === 'object' && !Array.isArray(v))) {
      const columns = [...new Set(value.flatMap((v) => Object.keys(v)))];
      return h(
        'div',
        { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Table' },
        h(
          'table',
          { class: 'data' },
          h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, humanKey(c))))),
          h(
            'tbody',
            {},
            value.map((row) =>
              h(
                'tr',
                {},
                columns.map((c) => h('td', {}, depth < 3 && row[c] && typeof row[c] === 'object' ? renderJson(row[c], depth + 1) : scalar(row[c]))),
              ),
            ),
          ),
        ),
      );
    }
    return h(
      'ul',
      { class: 'plain' },
      value.map((v) => h('li', {}, depth < 3 && v && typeof v === 'object' ? renderJson(v, depth + 1) : scalar(v))),
    );
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 0) return h('p', { class: 'muted' }, 'Nothing.');
    return h(
      'dl',
      { class: 'facts' },
      entries.map(([k, v]) => [
        h('dt', {}, humanKey(k)),
        h('dd', {}, depth < 3 && v && typeof v === 'object' ? renderJson(v, depth + 1) : scalar(v)),
      ]),
    );
  }
  return h('p', {}, scalar(value));
}

/** The claims of a signed receipt (a compact JWS), decoded for reading; null if it is not one. */
export function jwsClaims(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** A signed receipt: its claims as text, and the signed original to copy and keep. */
export function renderReceipt(token) {
  const claims = jwsClaims(token);
  if (!claims) return renderJson(token);
  return h(
    'div',
    { class: 'receipt' },
    h('p', { class: 'receipt-title' }, 'Receipt, signed by examplebank'),
    renderJson(claims),
    h(
      'details',
      {},
      h('summary', {}, 'Signed receipt (to keep as proof)'),
      h('p', { class: 'mono signed' }, token),
    ),
  );
}
