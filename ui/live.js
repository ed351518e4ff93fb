// Live: the calls on the line now, from the server's memory every few seconds, each with a
// duration that ticks in the browser between refreshes.

import { h, fill, table, clock } from './dom.js';
import { get } from './api.js';

const REFRESH_MS = 3000;

export async function show(main) {
  const capacity = h('p', { id: 'capacity' });
  const phones = h('div');
  const list = h('div');
  fill(main, h('h1', {}, 'Live calls'), capacity, phones, list);
  let skew = 0;
  let calls = [];

  function tick() {
    const now = Date.now() + skew;
    for (const cell of list.querySelectorAll('[data-since]')) {
      cell.textContent = clock((now - Number(cell.dataset.since)) / 1000);
    }
  }

  async function refresh() {
    let live;
    try {
      live = await get('/live');
    } catch (e) {
      fill(capacity, h('span', { class: 'error' }, `Could not read the live calls: ${e.message}`));
      return;
    }
    skew = live.now - Date.now();
    calls = live.calls;
    fill(capacity, `${live.live} of ${live.max} call slots in use`, ' · server ',
      h('span', { class: live.health === 'ok' ? 'ok' : 'error' }, live.health));
    fill(phones, live.phones.length === 0 ? null : table(['Phone', 'Live', 'Limit'],
      live.phones.map((p) => h('tr', {}, h('td', {}, p.number), h('td', { class: 'num' }, p.live), h('td', { class: 'num' }, p.max)))));
    fill(list, calls.length === 0 ? h('p', { class: 'muted' }, 'No call is live.') :
      table(['Call', 'Number', 'Direction', 'Agent', 'Phone', 'Status', 'Duration'], calls.map((c) =>
        h('tr', {},
          h('td', {}, h('a', { href: `#/calls/${encodeURIComponent(c.callLogId)}` }, c.callLogId)),
          h('td', {}, c.number),
          h('td', {}, c.direction),
          h('td', {}, c.agent || ''),
          h('td', {}, c.phone),
          h('td', {}, c.status),
          h('td', { class: 'num duration', 'data-since': c.answeredAt || c.startedAt }, '')))));
    tick();
  }

  await refresh();
  const refresher = setInterval(refresh, REFRESH_MS);
  const ticker = setInterval(tick, 1000);
  return () => { clearInterval(refresher); clearInterval(ticker); };
}
