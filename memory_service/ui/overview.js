// Overview: usage against the quota, and how many memories, messages, keys and named blocks.

import { api } from './api.js';
import { append, bytes, count, h, route } from './dom.js';

export async function overviewView(target, _params, current) {
  const [usage, stats] = await Promise.all([api('/api/usage'), api('/api/stats')]);
  if (!current()) return;
  const share = usage.quota > 0 ? Math.min(1, usage.used / usage.quota) : 1;
  const percent = share > 0 && share < 0.0001 ? '<0.01' : (share * 100).toFixed(share < 0.01 ? 2 : 1);
  const level = share >= 0.9 ? 'high' : share >= 0.7 ? 'mid' : 'low';
  const figures = [
    ['Memories', stats.memories, route('memories')],
    ['Messages', stats.messages, null],
    ['Key-value keys', stats.kvKeys, route('kv')],
    ['Named blocks', stats.namedBlocks, route('blocks')],
  ];
  append(
    target,
    h('h2', null, 'Overview'),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'usage-title' },
      h('h3', { id: 'usage-title' }, 'Storage used'),
      h(
        'div',
        {
          class: `bar ${level}`,
          role: 'meter',
          'aria-valuemin': 0,
          'aria-valuemax': usage.quota,
          'aria-valuenow': usage.used,
          'aria-valuetext': `${bytes(usage.used)} of ${bytes(usage.quota)}`,
          'aria-labelledby': 'usage-title',
          id: 'usage-bar',
        },
        h('div', { class: 'fill', 'data-percent': percent }),
      ),
      h(
        'p',
        { id: 'usage-text' },
        `${bytes(usage.used)} of ${bytes(usage.quota)} (${percent}%) — ` +
          `${count(usage.used)} of ${count(usage.quota)} bytes`,
      ),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'counts-title' },
      h('h3', { id: 'counts-title' }, 'Contents'),
      h(
        'dl',
        { class: 'figures', id: 'counts' },
        figures.map(([label, n, link]) =>
          h(
            'div',
            { class: 'figure' },
            h('dt', null, label),
            h('dd', null, link ? h('a', { href: link }, count(n)) : count(n)),
          ),
        ),
      ),
    ),
  );
  // The bar's width is set through the CSSOM: the CSP allows no inline style attribute.
  target.querySelector('.fill').style.width = `${share * 100}%`;
}
