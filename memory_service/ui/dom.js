// DOM helpers. Every piece of stored content reaches the page as text (text nodes,
// textContent): nothing here parses HTML, and links may only point inside the explorer.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'href') el.setAttribute('href', safeHref(value));
    else if (name === 'src') el.setAttribute('src', safeSrc(value));
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// Links are built by the explorer itself: a route of its own (#/...) or a blob: it made.
function safeHref(value) {
  const s = String(value);
  if (s.startsWith('#') || s.startsWith('blob:')) return s;
  throw new Error('refused link target');
}

function safeSrc(value) {
  const s = String(value);
  if (s.startsWith('blob:')) return s;
  throw new Error('refused image source');
}

export function route(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') query.set(k, v);
  }
  const q = query.toString();
  return '#/' + path + (q ? '?' + q : '');
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function count(n) {
  return Number(n).toLocaleString('en-US');
}

export function plural(n, one, many) {
  return `${count(n)} ${n === 1 ? one : many}`;
}

// A time as <time>: readable, with the exact ISO value as its datetime and tooltip.
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

export function field(label, input, hint) {
  const id = input.id || 'f-' + Math.random().toString(36).slice(2);
  input.id = id;
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { class: 'hint' }, hint) : null,
  );
}

export function table(caption, columns, rows) {
  // Each cell carries its column's name for the narrow (stacked) layout.
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      null,
      h('caption', null, caption),
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        null,
        rows.map((cells) =>
          h('tr', null, cells.map((cell, i) => h('td', { 'data-label': columns[i] }, cell))),
        ),
      ),
    ),
  );
}
