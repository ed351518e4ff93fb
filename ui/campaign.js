// A campaign: where it stands, its controls, its results CSV and its contacts' calls.

import { h, fill, facts, table } from './dom.js';
import { get } from './api.js';
import { controls, bar, widen } from './campaigns.js';

export async function show(main, _params, id) {
  const top = h('div');
  const calls = h('div');
  fill(main, top, h('h2', {}, 'Contacts'), calls);
  async function draw() {
    const c = await get(`/campaigns/${encodeURIComponent(id)}`);
    fill(top,
      h('h1', {}, `Campaign ${c.name}`),
      bar(c),
      facts([
        ['Status', c.status], ['Contacts', c.total], ['Dialed', c.dialed], ['Pending', c.pending], ['Retrying', c.retrying],
        ['In flight', c.inFlight], ['Completed', c.completed], ['Failed', c.failed],
        ['Skipped (do not call)', c.skippedDnc], ['Canceled', c.canceled],
        ['Window opens', c.windowOpensAt],
      ]),
      h('p', {}, controls(c, draw), ' ',
        h('a', { href: `/campaigns/${encodeURIComponent(id)}/calls.csv`, download: `campaign-${id}.csv` }, 'Results CSV'), ' ',
        h('a', { href: `#/calls?campaign=${encodeURIComponent(id)}` }, 'Its calls in the call log')));
    widen(top);
    const page = await get(`/campaigns/${encodeURIComponent(id)}/calls?limit=100`);
    fill(calls, table(['Row', 'Number', 'Attempts', 'Outcome', 'Last call'], page.calls.map((k) =>
      h('tr', {},
        h('td', { class: 'num' }, k.row),
        h('td', {}, k.to),
        h('td', { class: 'num' }, k.attempts ?? ''),
        h('td', {}, k.outcome || k.status || ''),
        h('td', {}, k.callLogId ? h('a', { href: `#/calls/${encodeURIComponent(k.callLogId)}` }, k.callLogId) : '')))));
  }
  await draw();
  const timer = setInterval(draw, 5000);
  return () => clearInterval(timer);
}
