// Do not call: search the list, add a number, take one off, import a CSV.

import { h, fill, table } from './dom.js';
import { get, post, del } from './api.js';

export async function show(main) {
  const search = h('input', { id: 'dnc-search', type: 'search', inputmode: 'tel' });
  const number = h('input', { id: 'dnc-number', type: 'tel', required: true });
  const file = h('input', { id: 'dnc-file', type: 'file', accept: '.csv,text/csv,text/plain' });
  const message = h('p', { role: 'status' });
  const list = h('div');
  let numbers = [];
  function draw() {
    const q = search.value.replace(/\s/g, '');
    const shown = numbers.filter((n) => n.includes(q)).slice(0, 500);
    fill(list, h('p', { class: 'muted' }, `${numbers.length} numbers on the list${q ? `, ${shown.length} shown` : ''}.`),
      table(['Number', ''], shown.map((n) => h('tr', {}, h('td', {}, n),
        h('td', {}, h('button', { type: 'button', class: 'quiet', 'aria-label': `Remove ${n}`,
          onclick: async () => { await del(`/dnc/${encodeURIComponent(n)}`); await load(); } }, 'Remove'))))));
  }
  async function load() { numbers = (await get('/dnc')).numbers; draw(); }
  const said = (answer) => fill(message, `Added ${answer.added}, already listed ${answer.alreadyListed}` +
    (answer.invalid && answer.invalid.length ? `; invalid: ${answer.invalid.map((r) => `row ${r.row}: ${r.error}`).join('; ')}` : '.'));
  const addForm = h('form', { class: 'row' }, h('label', { for: 'dnc-number' }, 'Number', number), h('button', { type: 'submit' }, 'Add number'));
  addForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try { said(await post('/dnc', { numbers: [number.value.trim()] })); number.value = ''; await load(); } catch (e) { fill(message, h('span', { class: 'error' }, e.message)); }
  });
  const importForm = h('form', { class: 'row' }, h('label', { for: 'dnc-file' }, 'Import a CSV', file), h('button', { type: 'submit' }, 'Import'));
  importForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!file.files[0]) return;
    try { said(await post('/dnc', await file.files[0].text(), 'text/csv')); await load(); } catch (e) { fill(message, h('span', { class: 'error' }, e.message)); }
  });
  search.addEventListener('input', draw);
  fill(main, h('h1', {}, 'Do not call'),
    h('div', { class: 'row' }, h('label', { for: 'dnc-search' }, 'Search', search)),
    addForm, importForm, message, list);
  await load();
}
