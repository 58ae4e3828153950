// Phone notifications: a banner at the top of the screen, read out by screen readers (the
// container is a polite live region; refusals and failures are alerts). Each can be closed
// with its button, and goes away by itself after a while (failures stay longer).

import { h } from './dom.js';

let container = null;

export function mountNotifications(element) {
  container = element;
}

/**
 * Shows a notification. kind: "ok", "info", "warn" or "error". Returns an object whose
 * update() replaces the text (a "Paying…" banner becomes the outcome).
 */
export function notify(kind, title, text, { icon = 'bank', timeout } = {}) {
  if (!container) return { update() {}, close() {} };
  const titleNode = h('strong', { class: 'note-title' }, title);
  const textNode = h('span', { class: 'note-text' }, text);
  const close = h('button', { type: 'button', class: 'note-close', 'aria-label': 'Dismiss notification' }, '×');
  const note = h(
    'div',
    { class: ['note', `note-${kind}`], role: kind === 'error' || kind === 'warn' ? 'alert' : 'status' },
    h('span', { class: ['note-icon', `icon-${icon}`], 'aria-hidden': 'true' }),
    h('span', { class: 'note-body' }, titleNode, textNode),
    close,
  );
  let timer = null;
  const remove = () => {
    clearTimeout(timer);
    note.remove();
  };
  const arm = (k) => {
    clearTimeout(timer);
    const wait = timeout ?? { ok: 8000, info: 8000, warn: 20000, error: 15000 }[k] ?? 0;
    if (wait > 0) timer = setTimeout(remove, wait);
  };
  close.addEventListener('click', remove);
  container.prepend(note);
  while (container.children.length > 2) container.lastElementChild.remove();
  arm(kind);
  return {
    element: note,
    update(newKind, newTitle, newText) {
      note.className = `note note-${newKind}`;
      note.setAttribute('role', newKind === 'error' || newKind === 'warn' ? 'alert' : 'status');
      titleNode.textContent = newTitle;
      textNode.textContent = newText;
      arm(newKind);
    },
    close: remove,
  };
}

/** Removes every notification (a new action's outcome replaces the old ones). */
export function dismissAll() {
  container?.replaceChildren();
}
