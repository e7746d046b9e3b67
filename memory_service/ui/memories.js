// Memories: the paged table with exact filters, one memory's messages (newest page first,
// older pages on request through the API's cursor), and deletes confirmed with a dry run.

import { api } from './api.js';
import { append, bytes, clear, count, field, h, plural, route, table, when } from './dom.js';
import { confirmAction, fail, Pager, say, sizeSelect } from './shell.js';

const FILTERS = [
  ['conversationId', 'Conversation id'],
  ['blockId', 'Block id'],
  ['blockName', 'Block name'],
];
// Longer contents start collapsed, with a button to show them whole.
const COLLAPSE_CHARS = 600;
const COLLAPSE_LINES = 12;
let listPageSize = 50;
let messagePageSize = 200;

function filterOf(params) {
  const flt = {};
  for (const [name] of FILTERS) {
    const value = params.get(name);
    if (value) flt[name] = value;
  }
  return flt;
}

// "This deletes 3 memories, 41 messages": the dry run's count, and the messages they hold.
async function confirmDelete(flt, what) {
  const [dry, stats] = await Promise.all([
    api('/api/memory', { method: 'DELETE', query: { ...flt, dryRun: 'true' } }),
    api('/api/stats', { query: flt }),
  ]);
  if (dry.deletedCount === 0) {
    say('Nothing to delete: no memory matches.');
    return null;
  }
  const text =
    `This deletes ${plural(dry.deletedCount, 'memory', 'memories')}, ` +
    `${plural(stats.messages, 'message', 'messages')} (${bytes(dry.freedBytes)}) ${what}. ` +
    'It cannot be undone.';
  if (!(await confirmAction('Delete memories?', text))) {
    say('Nothing was deleted.');
    return null;
  }
  const done = await api('/api/memory', { method: 'DELETE', query: flt });
  say(
    `Deleted ${plural(done.deletedCount, 'memory', 'memories')}, ` +
      `freeing ${bytes(done.freedBytes)}.`,
  );
  return done;
}

export async function memoriesView(target, params, current) {
  const flt = filterOf(params);
  const filtered = Object.keys(flt).length > 0;
  const inputs = {};
  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Filter memories',
      onsubmit: (event) => {
        event.preventDefault();
        const next = {};
        for (const [name] of FILTERS) next[name] = inputs[name].value;
        location.hash = route('memories', next);
      },
    },
    FILTERS.map(([name, label]) => {
      inputs[name] = h('input', {
        id: `filter-${name}`,
        name,
        value: flt[name] || '',
        spellcheck: 'false',
        autocomplete: 'off',
      });
      return field(label, inputs[name]);
    }),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit' }, 'Filter'),
      h('a', { href: route('memories'), class: 'button secondary' }, 'Clear'),
    ),
    h('p', { class: 'hint' }, 'Exact matches: every character counts, % and _ included.'),
  );
  const results = h('div', { id: 'memory-results' });
  append(target, h('h2', null, 'Memories'), form, results);
  if (filtered) {
    append(
      target,
      h(
        'p',
        null,
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            id: 'delete-matching',
            onclick: async () => {
              try {
                if (await confirmDelete(flt, 'matching this filter')) pager.first();
              } catch (error) {
                fail(error);
              }
            },
          },
          'Delete matching memories…',
        ),
      ),
    );
  }

  const pager = new Pager(async (cursor) => {
    // lastN=0: the table needs each memory's counts, not its messages.
    const query = { ...flt, limit: listPageSize, cursor, lastN: 0 };
    const page = await api(filtered ? '/api/memory' : '/api/memory/all', { query });
    if (!current()) return;
    clear(results);
    const rows = page.memories.map((m) => [
      h(
        'a',
        { href: route('memory', { conversationId: m.conversationId, blockId: m.blockId }) },
        m.conversationId,
      ),
      h('code', null, m.blockId),
      m.blockName === null ? h('span', { class: 'muted' }, 'none') : m.blockName,
      count(m.messageCount),
      when(m.updatedAt),
    ]);
    append(
      results,
      rows.length
        ? table(
            filtered ? 'Memories matching the filter' : 'All memories of the workspace',
            ['Conversation', 'Block id', 'Block name', 'Messages', 'Updated'],
            rows,
          )
        : h('p', { class: 'empty' }, filtered ? 'No memory matches.' : 'No memories yet.'),
      h(
        'div',
        { class: 'pager-row' },
        pager.controls('Memory', page.nextCursor),
        sizeSelect('Per page', [25, 50, 100, 500], listPageSize, (n) => {
          listPageSize = n;
          pager.first();
        }),
      ),
    );
  });
  await pager.first();
}

function messageItem(message) {
  const content = h('pre', { class: 'content' }, message.content);
  const lines = message.content.split('\n').length;
  const long = message.content.length > COLLAPSE_CHARS || lines > COLLAPSE_LINES;
  const label = `message ${count(message.seq + 1)}`;
  const tools = h('div', { class: 'message-tools' });
  if (long) {
    content.classList.add('collapsed');
    const toggle = h(
      'button',
      {
        type: 'button',
        class: 'link toggle',
        'aria-expanded': 'false',
        onclick: () => {
          const open = content.classList.toggle('collapsed') === false;
          toggle.setAttribute('aria-expanded', String(open));
          toggle.textContent = open ? 'Show less' : `Show all (${count(message.content.length)} characters)`;
        },
      },
      `Show all (${count(message.content.length)} characters)`,
    );
    tools.append(toggle);
  }
  tools.append(
    h(
      'button',
      {
        type: 'button',
        class: 'link copy',
        'aria-label': `Copy ${label}`,
        onclick: () => copyText(message.content, label),
      },
      'Copy',
    ),
  );
  return h(
    'li',
    { class: `message role-${roleClass(message.role)}`, 'data-seq': message.seq },
    h(
      'div',
      { class: 'message-head' },
      h('span', { class: 'role' }, message.role),
      h('span', { class: 'seq' }, `#${count(message.seq + 1)}`),
      tools,
    ),
    content,
  );
}

function roleClass(role) {
  return ['user', 'assistant', 'system'].includes(role) ? role : 'other';
}

async function copyText(text, label) {
  try {
    await navigator.clipboard.writeText(text);
    say(`Copied ${label}.`);
  } catch {
    // No clipboard permission (e.g. not a secure context): select a hidden copy instead.
    const area = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    say(ok ? `Copied ${label}.` : `Could not copy ${label}: the browser refused.`);
  }
}

export async function memoryView(target, params, current) {
  const conversationId = params.get('conversationId') || '';
  const blockId = params.get('blockId') || 'default';
  const base = { conversationId, blockId };
  const first = await api('/api/memory/messages', { query: { ...base, limit: messagePageSize } });
  if (!current()) return;
  const list = h('ol', { class: 'messages', id: 'messages', 'aria-label': 'Messages' });
  const range = h('p', { class: 'range', id: 'message-range', 'aria-live': 'polite' });
  const older = h('div', { class: 'older' });
  let loaded = 0;
  let lowest = null;

  function showRange(total) {
    range.textContent = loaded
      ? `Showing messages ${count(lowest + 1)}–${count(lowest + loaded)} of ${count(total)}`
      : 'This memory holds no messages.';
  }

  function showOlder(cursor, total) {
    clear(older);
    if (cursor) {
      const button = h(
        'button',
        {
          type: 'button',
          id: 'older-messages',
          onclick: async () => {
            button.disabled = true;
            try {
              const page = await api('/api/memory/messages', {
                query: { ...base, cursor, limit: messagePageSize },
              });
              if (!current()) return;
              const items = page.data.map(messageItem);
              list.prepend(...items);
              loaded += page.data.length;
              if (page.data.length) lowest = page.data[0].seq;
              showRange(page.messageCount);
              showOlder(page.nextCursor, page.messageCount);
              const focus = older.querySelector('button');
              if (focus) focus.focus();
              else if (items.length) focusItem(items[0]);
              say(`Loaded ${plural(page.data.length, 'older message', 'older messages')}.`);
            } catch (error) {
              button.disabled = false;
              fail(error);
            }
          },
        },
        `Older messages (${count(Math.min(messagePageSize, lowest))} of ${count(lowest)})`,
      );
      older.append(button);
    } else if (total) {
      older.append(h('p', { class: 'muted', id: 'first-message' }, 'Start of the conversation.'));
    }
  }

  function focusItem(item) {
    item.tabIndex = -1;
    item.focus();
  }

  const deleteButton = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      id: 'delete-memory',
      onclick: async () => {
        try {
          if (await confirmDelete(base, 'for this conversation and block')) {
            location.hash = route('memories');
          }
        } catch (error) {
          fail(error);
        }
      },
    },
    'Delete this memory…',
  );

  append(
    target,
    h('h2', null, 'Memory'),
    h(
      'dl',
      { class: 'facts' },
      h('div', null, h('dt', null, 'Conversation'), h('dd', { id: 'memory-conversation' }, first.conversationId)),
      h('div', null, h('dt', null, 'Block id'), h('dd', null, h('code', null, first.blockId))),
      h(
        'div',
        null,
        h('dt', null, 'Block name'),
        h('dd', null, first.blockName === null ? h('span', { class: 'muted' }, 'none') : first.blockName),
      ),
      h('div', null, h('dt', null, 'Messages'), h('dd', { id: 'memory-count' }, count(first.messageCount))),
      h('div', null, h('dt', null, 'Key'), h('dd', null, h('code', null, first.key))),
    ),
    h(
      'div',
      { class: 'toolbar' },
      h('a', { href: route('memories', { conversationId }), class: 'button secondary' }, 'All blocks of this conversation'),
      sizeSelect('Messages per page', [50, 200, 1000], messagePageSize, (n) => {
        messagePageSize = n;
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      }),
      deleteButton,
    ),
    range,
    older,
    list,
  );
  list.append(...first.data.map(messageItem));
  loaded = first.data.length;
  lowest = loaded ? first.data[0].seq : 0;
  showRange(first.messageCount);
  showOlder(first.nextCursor, first.messageCount);
}
