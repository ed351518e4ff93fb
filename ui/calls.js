// Calls: the call log, a page at a time, filtered as GET /calls takes it; the same filter
// exports as CSV.

import { h, fill, table, when } from './dom.js';
import { get } from './api.js';

const FILTERS = ['status', 'direction', 'since', 'until', 'number', 'agent', 'campaign', 'id'];
const STATUSES = ['', 'queued', 'initiated', 'connected', 'in-progress', 'completed', 'failed', 'busy', 'no-answer', 'canceled', 'interrupted'];

function field(name, label, control) {
  control.id = `filter-${name}`;
  control.name = name;
  return h('label', { for: control.id }, label, control);
}

export async function show(main, params) {
  const select = (name, options) => h('select', {}, options.map((o) =>
    h('option', { value: o, selected: params.get(name) === o }, o || 'any')));
  const input = (name, type, extra) => h('input', { type, value: params.get(name) || '', ...extra });
  const form = h('form', { class: 'filters', role: 'search' },
    field('status', 'Status', select('status', STATUSES)),
    field('direction', 'Direction', select('direction', ['', 'inbound', 'outbound', 'web'])),
    field('since', 'From day', input('since', 'date')),
    field('until', 'To day', input('until', 'date')),
    field('number', 'Number contains', input('number', 'search', { inputmode: 'tel' })),
    field('agent', 'Agent', input('agent', 'search')),
    field('campaign', 'Campaign id', input('campaign', 'search')),
    field('id', 'callLogId or CallSid', input('id', 'search')),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    location.hash = `#/calls?${q}`;
  });
  const query = new URLSearchParams();
  for (const name of FILTERS) if (params.get(name)) query.set(name, params.get(name));
  const rows = h('tbody');
  const more = h('button', { type: 'button', class: 'quiet', hidden: true }, 'Next page');
  const exportLink = h('a', { href: `/calls.csv?${query}`, download: 'calls.csv' }, 'Export CSV');
  fill(main, h('h1', {}, 'Calls'), form, h('p', {}, exportLink),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Call', 'Started', 'Direction', 'From', 'To', 'Agent', 'Status', 'Seconds'].map((t) => h('th', { scope: 'col' }, t)))),
      rows)), more);
  let next = null;
  async function page() {
    const q = new URLSearchParams(query);
    if (next) q.set('before', next);
    const answer = await get(`/calls?${q}`);
    next = answer.next;
    more.hidden = !next;
    if (answer.calls.length === 0 && rows.children.length === 0) {
      rows.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No call matches.')));
    }
    for (const c of answer.calls) {
      rows.append(h('tr', {},
        h('td', {}, h('a', { href: `#/calls/${encodeURIComponent(c.callLogId)}` }, c.callLogId)),
        h('td', {}, when(c.createdAtIso)),
        h('td', {}, c.direction),
        h('td', {}, c.from || ''),
        h('td', {}, c.to || ''),
        h('td', {}, c.agent || ''),
        h('td', {}, c.status),
        h('td', { class: 'num' }, c.durationS ?? '')));
    }
  }
  more.addEventListener('click', page);
  await page();
}
