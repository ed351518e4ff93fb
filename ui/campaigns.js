// Campaigns: each with its progress and its controls.

import { h, fill, table } from './dom.js';
import { get, post } from './api.js';

// Pause, Resume and Cancel for a campaign in `status`; `done` redraws after one.
export function controls(c, done) {
  const act = (action) => async (event) => {
    event.target.disabled = true;
    try { await post(`/campaigns/${encodeURIComponent(c.id)}/${action}`); } catch (e) { alert(e.message); }
    done();
  };
  const finished = c.status === 'completed' || c.status === 'canceled';
  return h('span', { class: 'row' },
    c.status === 'paused' || finished ? null : h('button', { type: 'button', class: 'quiet', onclick: act('pause'), 'aria-label': `Pause ${c.name}` }, 'Pause'),
    c.status === 'paused' ? h('button', { type: 'button', class: 'quiet', onclick: act('resume'), 'aria-label': `Resume ${c.name}` }, 'Resume') : null,
    finished ? null : h('button', { type: 'button', class: 'quiet', onclick: act('cancel'), 'aria-label': `Cancel ${c.name}` }, 'Cancel'));
}

export function bar(c) {
  const done = Math.max(0, (c.total || 0) - (c.pending || 0) - (c.inFlight || 0));
  const pct = c.total ? Math.round((100 * done) / c.total) : 0;
  return h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': `${c.name} progress` },
    h('div', { style: null, 'data-pct': pct }));
}

export async function show(main) {
  const body = h('div');
  fill(main, h('h1', {}, 'Campaigns'), h('p', {}, h('a', { href: '#/campaigns/new' }, 'New campaign')), body);
  async function draw() {
    const { campaigns } = await get('/campaigns');
    const shown = await Promise.all(campaigns.slice(0, 50).map((c) =>
      get(`/campaigns/${encodeURIComponent(c.id)}`).catch(() => c)));
    fill(body, shown.length === 0 ? h('p', { class: 'muted' }, 'No campaign yet.') :
      table(['Campaign', 'Status', 'Progress', 'Pending', 'Retrying', 'In flight', 'Completed', 'Failed', 'Skipped', ''], shown.map((c) =>
        h('tr', {},
          h('td', {}, h('a', { href: `#/campaigns/${encodeURIComponent(c.id)}` }, c.name)),
          h('td', {}, c.status),
          h('td', {}, bar(c)),
          h('td', { class: 'num' }, c.pending ?? ''),
          h('td', { class: 'num' }, c.retrying ?? ''),
          h('td', { class: 'num' }, c.inFlight ?? ''),
          h('td', { class: 'num' }, c.completed ?? ''),
          h('td', { class: 'num' }, c.failed ?? ''),
          h('td', { class: 'num' }, (c.skippedDnc ?? 0) + (c.canceled ?? 0)),
          h('td', {}, controls(c, draw))))));
    widen(body);
  }
  await draw();
  const timer = setInterval(draw, 5000);
  return () => clearInterval(timer);
}

// The bars' widths, set from script: the page's policy allows no inline style attribute.
export function widen(root) {
  for (const fillEl of root.querySelectorAll('[data-pct]')) fillEl.style.width = `${fillEl.dataset.pct}%`;
}
