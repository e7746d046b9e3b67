// The page's shared parts: status and error messages, the confirmation dialog, the pager.

import { h } from './dom.js';

const $ = (id) => document.getElementById(id);

export function say(text) {
  const status = $('status');
  status.textContent = text;
}

export function fail(error) {
  const alert = $('alert');
  alert.replaceChildren(
    h('span', null, error && error.message ? error.message : String(error)),
    h('button', { type: 'button', class: 'link', onclick: () => (alert.hidden = true) }, 'Dismiss'),
  );
  alert.hidden = false;
}

export function quiet() {
  $('alert').hidden = true;
  $('status').textContent = '';
}

// Asks before something irreversible; resolves true when the user confirmed.
export function confirmAction(title, text, action = 'Delete') {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = action;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

// Cursor paging: the API gives only "next"; the pages seen so far are kept to go back.
export class Pager {
  constructor(load) {
    this.load = load; // (cursor) => Promise
    this.stack = [null];
  }
  get page() {
    return this.stack.length;
  }
  get cursor() {
    return this.stack[this.stack.length - 1];
  }
  first() {
    this.stack = [null];
    return this.load(null);
  }
  next(cursor) {
    this.stack.push(cursor);
    return this.load(cursor);
  }
  previous() {
    if (this.stack.length > 1) this.stack.pop();
    return this.load(this.cursor);
  }
  reload() {
    return this.load(this.cursor);
  }
  controls(label, nextCursor) {
    return h(
      'nav',
      { class: 'pager', 'aria-label': `${label} pages` },
      h(
        'button',
        { type: 'button', disabled: this.page === 1, onclick: () => this.first() },
        'First page',
      ),
      h(
        'button',
        { type: 'button', disabled: this.page === 1, onclick: () => this.previous() },
        'Previous page',
      ),
      h('span', { class: 'page-no' }, `Page ${this.page}`),
      h(
        'button',
        {
          type: 'button',
          class: 'next-page',
          disabled: !nextCursor,
          onclick: () => this.next(nextCursor),
        },
        'Next page',
      ),
    );
  }
}

export function sizeSelect(label, sizes, current, onchange) {
  const select = h(
    'select',
    { onchange: () => onchange(Number(select.value)) },
    sizes.map((n) => h('option', { value: n, selected: n === current }, String(n))),
  );
  return h('label', { class: 'inline' }, label + ' ', select);
}
