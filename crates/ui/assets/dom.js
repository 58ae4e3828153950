// Building the page from data without ever parsing data as HTML: every value becomes a text
// node or an attribute set through the DOM. No string is ever parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) {
      append(parent, child);
    } else if (child instanceof Node) {
      parent.appendChild(child);
    } else {
      parent.appendChild(document.createTextNode(String(child)));
    }
  }
}

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    // Attributes are set with setAttribute, never as properties; style would break the CSP.
    if (name === 'style') throw new Error('refusing to set a style attribute');
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name.startsWith('on')) {
      throw new Error(`refusing to set the ${name} attribute from text`);
    } else if (name === 'text') {
      element.textContent = String(value);
    } else if (name === 'class') {
      element.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
}

/** Creates an HTML element: h('p', { class: 'x' }, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

/** Creates an SVG element the same way. */
export function svg(tag, attrs, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// ---- Money: integer cents in, text out; never a float. ----

/** "12.34" → 1234; null when the text is not a plain amount. */
export function parseMinor(text) {
  const match = /^(\d+)(?:\.(\d{1,2}))?$/.exec(String(text ?? ''));
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
}

/** 1234 → "12.34", the form the API accepts. */
export function toAmount(cents) {
  const whole = Math.trunc(cents / 100);
  const rest = cents % 100;
  return `${whole}.${String(rest).padStart(2, '0')}`;
}

/** 123456 → "1,234.56" for reading. */
export function formatMoney(cents) {
  const [whole, rest] = toAmount(cents).split('.');
  return `${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}.${rest}`;
}

export function formatPoints(points) {
  const n = Number(points) || 0;
  return `${String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',')} ${n === 1 ? 'point' : 'points'}`;
}

export function formatDate(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export const CATEGORY_LABELS = {
  groceries: 'Groceries',
  fuel: 'Fuel',
  dining: 'Dining',
  coffee: 'Coffee',
  transport: 'Transport',
  shopping: 'Shopping',
  travel: 'Travel',
  entertainment: 'Entertainment',
  utilities: 'Utilities',
  health: 'Health',
  other: 'Other',
};

export function categoryLabel(category) {
  return CATEGORY_LABELS[category] ?? String(category ?? 'Other');
}

/** A class-safe name for a category (unknown ones share the "other" colour). */
export function categoryClass(category) {
  return Object.hasOwn(CATEGORY_LABELS, category) ? category : 'other';
}

/**
 * Runs an operation while a button shows progress: disabled, aria-busy and a spinner with
 * a label saying what is happening. The label comes back whatever the outcome.
 */
export async function withProgress(button, label, operation) {
  const original = [...button.childNodes];
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  fill(button, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
  try {
    return await operation();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    fill(button, ...original);
  }
}

/** A status line under a control: role=status for news, role=alert for failures. */
export function statusLine(className = 'status') {
  const line = h('p', { class: className, role: 'status', 'aria-live': 'polite' });
  return {
    element: line,
    ok(text) {
      line.className = `${className} ok`;
      fill(line, text);
    },
    info(text) {
      line.className = `${className} info`;
      fill(line, text);
    },
    error(text) {
      line.className = `${className} error`;
      fill(line, text);
    },
    busy(text) {
      line.className = `${className} busy`;
      fill(line, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
    },
    clear() {
      line.className = className;
      fill(line);
    },
  };
}
