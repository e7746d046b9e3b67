// Key-value: keys by prefix (paged), a value's preview (text, JSON, image, hex dump) with its
// download, and writes and deletes made conditional on the version the page showed (If-Match),
// so that a stale page never overwrites a newer value.

import { api, ApiError, raw, segment } from './api.js';
import { append, bytes, clear, count, field, h, route, table, when } from './dom.js';
import { confirmAction, fail, Pager, say, sizeSelect } from './shell.js';

// Shown as pictures; any other type (SVG included: it may hold script) is shown as text or bytes.
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp'];
const TEXT_PREVIEW = 256 * 1024;
// Larger values are fetched only when asked for (a value may be up to 25 MiB).
const AUTO_LOAD = 4 * 1024 * 1024;
const HEX_PREVIEW = 16 * 1024;
let pageSize = 50;

const mediaType = (contentType) => (contentType || '').split(';')[0].trim().toLowerCase();
const isJson = (type) => type === 'application/json' || type.endsWith('+json');

class Stale extends Error {}

// blob: URLs of the value on screen (image, download), released when another value is opened.
let objectUrls = [];

function objectUrl(blob) {
  const made = URL.createObjectURL(blob);
  objectUrls.push(made);
  return made;
}

export async function kvView(target, params, current) {
  const prefix = params.get('prefix') || '';
  const prefixInput = h('input', { name: 'prefix', value: prefix, spellcheck: 'false', autocomplete: 'off' });
  const results = h('div', { id: 'kv-results' });
  append(
    target,
    h('h2', null, 'Key-value'),
    h(
      'form',
      {
        class: 'filters',
        role: 'search',
        'aria-label': 'Keys by prefix',
        onsubmit: (event) => {
          event.preventDefault();
          location.hash = route('kv', { prefix: prefixInput.value });
        },
      },
      field('Key prefix', prefixInput, 'Keys that start with exactly this, in byte order.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'List keys')),
    ),
    results,
    newValueForm(prefix),
  );
  const pager = new Pager(async (cursor) => {
    const page = await api('/api/kv', { query: { prefix, cursor, limit: pageSize } });
    if (!current()) return;
    clear(results);
    const rows = page.items.map((item) => [
      h('a', { href: route('kv-value', { key: item.key }) }, item.key),
      bytes(item.size - new TextEncoder().encode(item.key).length),
      h('code', null, item.contentType),
      String(item.version),
      item.expiresAt ? when(item.expiresAt) : h('span', { class: 'muted' }, 'never'),
      when(item.updatedAt),
    ]);
    append(
      results,
      rows.length
        ? table(prefix ? 'Keys with the prefix' : 'Keys', ['Key', 'Size', 'Content type', 'Version', 'Expires', 'Updated'], rows)
        : h('p', { class: 'empty' }, prefix ? 'No key has this prefix.' : 'No keys yet.'),
      h(
        'div',
        { class: 'pager-row' },
        pager.controls('Key', page.nextCursor),
        sizeSelect('Per page', [25, 50, 100, 500], pageSize, (n) => {
          pageSize = n;
          pager.first();
        }),
      ),
    );
  });
  await pager.first();
}

// The fields of a write: text or a file, content type, TTL.
function valueFields(initial) {
  const text = h('textarea', { name: 'text', rows: 8, spellcheck: 'false' });
  text.value = initial.text || '';
  const file = h('input', { type: 'file', name: 'file' });
  const type = h('input', {
    name: 'contentType',
    value: initial.contentType || 'text/plain; charset=utf-8',
    spellcheck: 'false',
  });
  const ttl = h('input', { name: 'ttl', type: 'number', min: '0.001', step: 'any', inputmode: 'decimal' });
  file.addEventListener('change', () => {
    const chosen = file.files[0];
    if (chosen && chosen.type) type.value = chosen.type;
  });
  return {
    nodes: [
      field('Text value', text, 'Stored as UTF-8. Or choose a file below: a file wins over the text.'),
      field('Or a file', file),
      field('Content type', type),
      field('Expires after (seconds)', ttl, 'Empty: never expires.'),
    ],
    read() {
      const chosen = file.files[0];
      // A value that is not text shows no text to edit: an empty box must not wipe it.
      if (initial.binary && !chosen && text.value === '') {
        throw new Error('This value is not text: choose a file to replace it, or type the new text.');
      }
      return {
        body: chosen || new TextEncoder().encode(text.value),
        contentType: type.value.trim() || 'application/octet-stream',
        ttl: ttl.value.trim(),
      };
    },
  };
}

async function put(key, value, condition) {
  const response = await raw(`/api/kv/${segment(key)}`, {
    method: 'PUT',
    query: { ttl: value.ttl },
    headers: { 'Content-Type': value.contentType, ...condition },
    body: value.body,
  });
  const data = await response.json().catch(() => null);
  if (response.status === 412) throw new Stale();
  if (!response.ok || !data || !data.success) throw new ApiError(response.status, data);
  return data;
}

function newValueForm(prefix) {
  const key = h('input', { name: 'key', required: true, value: prefix, spellcheck: 'false', autocomplete: 'off' });
  const fields = valueFields({});
  return h(
    'section',
    { class: 'panel', 'aria-labelledby': 'new-value-title' },
    h('h3', { id: 'new-value-title' }, 'New value'),
    h(
      'form',
      {
        id: 'new-value',
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            // Create only: an existing key is never replaced from here (If-None-Match: *).
            await put(key.value, fields.read(), { 'If-None-Match': '*' });
            say(`Stored ${key.value}.`);
            location.hash = route('kv-value', { key: key.value });
          } catch (error) {
            fail(
              error instanceof Stale
                ? new Error(`${key.value} exists already: open it to replace its value.`)
                : error,
            );
          }
        },
      },
      field('Key', key),
      fields.nodes,
      h('button', { type: 'submit' }, 'Store'),
    ),
  );
}

function staleNotice(reload) {
  const notice = h(
    'div',
    { class: 'stale', role: 'alert', id: 'stale' },
    h(
      'p',
      null,
      'This value was changed or deleted since this page loaded it, so your change was not ' +
        'saved (nothing was overwritten). Reload to see the current value, then try again.',
    ),
    h('button', { type: 'button', id: 'stale-reload', onclick: reload }, 'Reload the value'),
  );
  return notice;
}

// The notice sits above the value it is about; focus moves to its Reload button.
function showStale(notices, reload) {
  const notice = staleNotice(reload);
  clear(notices).append(notice);
  notice.scrollIntoView({ block: 'center' });
  notice.querySelector('button').focus({ preventScroll: true });
}

function hexDump(view) {
  const lines = [];
  for (let offset = 0; offset < view.length; offset += 16) {
    const row = view.subarray(offset, offset + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

function decodeText(buffer) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buffer);
  } catch {
    return null;
  }
}

// The preview of a value and what it offers to edit with (its text, if it is text).
function preview(key, buffer, contentType) {
  const type = mediaType(contentType);
  const view = new Uint8Array(buffer);
  const nodes = [];
  let text = null;
  if (IMAGE_TYPES.includes(type)) {
    const src = objectUrl(new Blob([buffer], { type }));
    nodes.push(h('img', { class: 'image-preview', id: 'image-preview', src, alt: `Image stored under ${key}` }));
  } else {
    text = decodeText(buffer);
    const textual = type.startsWith('text/') || isJson(type) || type.endsWith('+xml') || type.endsWith('/xml');
    if (text !== null && (textual || !/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text))) {
      let shown = text;
      let label = 'Text';
      if (isJson(type) || type === '') {
        try {
          shown = JSON.stringify(JSON.parse(text), null, 2);
          label = 'JSON';
        } catch {
          label = 'Text (not valid JSON)';
        }
      }
      const cut = shown.length > TEXT_PREVIEW;
      nodes.push(
        h('p', { class: 'muted', id: 'preview-kind' }, cut ? `${label}, first ${count(TEXT_PREVIEW)} characters` : label),
        h('pre', { class: 'content value', id: 'text-preview' }, cut ? shown.slice(0, TEXT_PREVIEW) : shown),
      );
    } else {
      text = null;
      const cut = view.length > HEX_PREVIEW;
      nodes.push(
        h('p', { class: 'muted', id: 'preview-kind' }, cut ? `Bytes, first ${count(HEX_PREVIEW)} as hex` : 'Bytes as hex'),
        h('pre', { class: 'content hex', id: 'hex-preview' }, hexDump(cut ? view.subarray(0, HEX_PREVIEW) : view)),
      );
    }
  }
  // Downloads are plain bytes: the browser never renders them in this origin.
  const name = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-100) || 'value';
  const download = objectUrl(new Blob([buffer], { type: 'application/octet-stream' }));
  nodes.push(h('p', null, h('a', { href: download, download: name, class: 'button secondary', id: 'download' }, 'Download')));
  return { nodes, text };
}

function notFound(target, key) {
  append(
    target,
    h('h2', null, 'Value'),
    h('p', { class: 'empty' }, 'No value is stored under ', h('code', null, key), ' (deleted or expired).'),
    h('a', { href: route('kv') }, 'Back to the keys'),
  );
}

export async function kvValueView(target, params, current) {
  for (const made of objectUrls) URL.revokeObjectURL(made);
  objectUrls = [];
  const key = params.get('key') || '';
  const path = `/api/kv/${segment(key)}`;
  if (params.get('load') !== 'all') {
    // The size first: a large value waits until the user asks for it.
    const head = await raw(path, { method: 'HEAD' });
    if (!current()) return;
    if (head.status === 404) return notFound(target, key);
    if (!head.ok) throw new ApiError(head.status, null);
    const size = Number(head.headers.get('X-Value-Length'));
    if (size > AUTO_LOAD) {
      append(
        target,
        h('h2', null, 'Value'),
        h(
          'dl',
          { class: 'facts' },
          h('div', null, h('dt', null, 'Key'), h('dd', { id: 'kv-key' }, key)),
          h('div', null, h('dt', null, 'Size'), h('dd', null, `${bytes(size)} (${count(size)} bytes)`)),
          h('div', null, h('dt', null, 'Content type'), h('dd', null, h('code', null, head.headers.get('Content-Type') || ''))),
          h('div', null, h('dt', null, 'Version'), h('dd', { id: 'kv-version' }, head.headers.get('ETag'))),
        ),
        h('p', null, `This value is ${bytes(size)}: it is loaded only when you ask.`),
        h(
          'p',
          { class: 'toolbar' },
          h('a', { href: route('kv-value', { key, load: 'all' }), class: 'button', id: 'load-value' }, 'Load, preview and download'),
          h('a', { href: route('kv'), class: 'button secondary' }, 'Back to the keys'),
        ),
      );
      return;
    }
  }
  const response = await raw(path);
  if (!current()) return;
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    if (response.status === 404) return notFound(target, key);
    throw new ApiError(response.status, data);
  }
  const etag = response.headers.get('ETag');
  const contentType = response.headers.get('Content-Type') || '';
  const expires = response.headers.get('X-Expires-At');
  const buffer = await response.arrayBuffer();
  if (!current()) return;
  const reload = () => window.dispatchEvent(new HashChangeEvent('hashchange'));
  const shown = preview(key, buffer, contentType);
  const notices = h('div', { id: 'kv-notices' });
  const fields = valueFields({ text: shown.text, contentType, binary: shown.text === null });

  const remove = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      id: 'delete-value',
      onclick: async () => {
        if (!(await confirmAction('Delete this value?', `This deletes the value stored under “${key}” (${bytes(buffer.byteLength)}). It cannot be undone.`))) return;
        try {
          const r = await raw(`/api/kv/${segment(key)}`, { method: 'DELETE', headers: { 'If-Match': etag } });
          if (r.status === 412) throw new Stale();
          const data = await r.json().catch(() => null);
          if (!r.ok) throw new ApiError(r.status, data);
          say(`Deleted ${key}.`);
          location.hash = route('kv');
        } catch (error) {
          if (error instanceof Stale) showStale(notices, reload);
          else fail(error);
        }
      },
    },
    'Delete…',
  );

  append(
    target,
    h('h2', null, 'Value'),
    h(
      'dl',
      { class: 'facts' },
      h('div', null, h('dt', null, 'Key'), h('dd', { id: 'kv-key' }, key)),
      h('div', null, h('dt', null, 'Size'), h('dd', null, `${bytes(buffer.byteLength)} (${count(buffer.byteLength)} bytes)`)),
      h('div', null, h('dt', null, 'Content type'), h('dd', null, h('code', { id: 'kv-type' }, contentType))),
      h('div', null, h('dt', null, 'Version'), h('dd', { id: 'kv-version' }, etag)),
      h('div', null, h('dt', null, 'Expires'), h('dd', null, expires ? when(expires) : 'never')),
    ),
    notices,
    h('section', { class: 'panel', 'aria-labelledby': 'preview-title' }, h('h3', { id: 'preview-title' }, 'Preview'), shown.nodes),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'replace-title' },
      h('h3', { id: 'replace-title' }, 'Replace the value'),
      h(
        'form',
        {
          id: 'replace-value',
          onsubmit: async (event) => {
            event.preventDefault();
            try {
              // Only over the version shown here: a newer write by anyone is never overwritten.
              await put(key, fields.read(), { 'If-Match': etag });
              say(`Saved ${key}.`);
              reload();
            } catch (error) {
              if (error instanceof Stale) showStale(notices, reload);
              else fail(error);
            }
          },
        },
        fields.nodes,
        h('button', { type: 'submit' }, 'Save'),
      ),
    ),
    h('p', { class: 'toolbar' }, h('a', { href: route('kv'), class: 'button secondary' }, 'Back to the keys'), remove),
  );
}
