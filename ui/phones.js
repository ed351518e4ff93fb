// Phones: ExoPhones with their own Exotel accounts. Tokens are write-only, as in the API:
// the page sees "****" and the last four characters.

import { h, fill, table } from './dom.js';
import { get, post, patch, del } from './api.js';
import { jsonForm } from './resource.js';

const EXAMPLE = '{\n  "number": "+918047112222",\n  "apiKey": "",\n  "apiToken": "",\n  "sid": "",\n  "maxConcurrent": 10\n}';

export async function show(main) {
  const body = h('div');
  fill(main, h('h1', {}, 'Phones'), body);
  async function draw() {
    const { phones } = await get('/phones');
    fill(body,
      phones.length === 0 ? h('p', { class: 'muted' }, 'No phone yet: calls go out on the environment\'s EXOTEL_* line.') :
        table(['Number', 'Account', 'Token', 'Caller id', 'Limit', 'Agent', ''], phones.map((p) =>
          h('tr', {},
            h('td', {}, p.number), h('td', {}, p.sid || ''), h('td', {}, p.apiToken || ''),
            h('td', {}, p.callerId || ''), h('td', { class: 'num' }, p.maxConcurrent ?? ''), h('td', {}, p.agent || ''),
            h('td', {}, h('button', { type: 'button', class: 'quiet', 'aria-label': `Remove ${p.number}`,
              onclick: async () => { if (confirm(`Remove ${p.number}?`)) { await del(`/phones/${encodeURIComponent(p.number)}`); draw(); } } }, 'Remove'))))),
      h('h2', {}, 'Add a phone'),
      jsonForm('phone-new', 'Phone (JSON)', 'Add phone', EXAMPLE, (v) => post('/phones', v), draw),
      h('h2', {}, 'Change a phone'),
      phones.length === 0 ? null : changeForm(phones, draw));
  }
  await draw();
}

function changeForm(phones, done) {
  const which = h('select', { id: 'phone-which' }, phones.map((p) => h('option', { value: p.number }, p.number)));
  return h('div', {},
    h('label', { for: 'phone-which' }, 'Phone', which),
    jsonForm('phone-change', 'Changes (JSON)', 'Save phone', '{\n  "maxConcurrent": 5\n}',
      (v) => patch(`/phones/${encodeURIComponent(which.value)}`, v), done));
}
