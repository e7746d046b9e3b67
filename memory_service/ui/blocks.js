// The block registry: each block id's display name, paged, with rename.

import { api, json, segment } from './api.js';
import { append, clear, field, h, route, table, when } from './dom.js';
import { fail, Pager, say } from './shell.js';

async function setName(blockId, name) {
  await json('PUT', `/api/memory/blocks/${segment(blockId)}`, { name });
  say(name === null ? `Block ${blockId} has no name now.` : `Block ${blockId} is now named ${name}.`);
}

function renameCell(block, reload) {
  const cell = h('div', { class: 'rename' });
  const show = () => {
    clear(cell).append(
      h(
        'button',
        {
          type: 'button',
          class: 'rename-button',
          'aria-label': `Rename block ${block.blockId}`,
          onclick: edit,
        },
        'Rename',
      ),
    );
  };
  const edit = () => {
    const input = h('input', { value: block.name || '', required: true, maxlength: 256 });
    const form = h(
      'form',
      {
        class: 'inline-form',
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            await setName(block.blockId, input.value);
            await reload();
          } catch (error) {
            fail(error);
          }
        },
      },
      field(`New name of ${block.blockId}`, input),
      h('button', { type: 'submit' }, 'Save'),
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            try {
              await setName(block.blockId, null);
              await reload();
            } catch (error) {
              fail(error);
            }
          },
        },
        'Forget name',
      ),
      h('button', { type: 'button', class: 'secondary', onclick: show }, 'Cancel'),
    );
    clear(cell).append(form);
    input.focus();
    input.select();
  };
  show();
  return cell;
}

export async function blocksView(target, _params, current) {
  const results = h('div', { id: 'block-results' });
  const idInput = h('input', { name: 'blockId', required: true, maxlength: 256, spellcheck: 'false' });
  const nameInput = h('input', { name: 'name', required: true, maxlength: 256 });
  append(
    target,
    h('h2', null, 'Blocks'),
    h(
      'p',
      null,
      'The workspace’s block registry: the display name of each block id. Every memory of a ' +
        'block shows its current name.',
    ),
    results,
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'name-block-title' },
      h('h3', { id: 'name-block-title' }, 'Name a block'),
      h(
        'form',
        {
          class: 'row-form',
          onsubmit: async (event) => {
            event.preventDefault();
            try {
              await setName(idInput.value, nameInput.value);
              idInput.value = '';
              nameInput.value = '';
              await pager.reload();
            } catch (error) {
              fail(error);
            }
          },
        },
        field('Block id', idInput),
        field('Name', nameInput),
        h('button', { type: 'submit' }, 'Save name'),
      ),
    ),
  );
  const pager = new Pager(async (cursor) => {
    const page = await api('/api/memory/blocks', { query: { cursor, limit: 50 } });
    if (!current()) return;
    clear(results);
    const rows = page.blocks.map((b) => [
      h('a', { href: route('memories', { blockId: b.blockId }) }, h('code', null, b.blockId)),
      h('span', { class: 'block-name' }, b.name === null ? '' : b.name),
      when(b.updatedAt),
      renameCell(b, () => pager.reload()),
    ]);
    append(
      results,
      rows.length
        ? table('Named blocks', ['Block id', 'Name', 'Named at', 'Rename'], rows)
        : h('p', { class: 'empty' }, 'No block has a name yet.'),
      pager.controls('Block', page.nextCursor),
    );
  });
  await pager.first();
}
