// New campaign: a CSV of contacts and the settings, checked by the server (dryRun) and shown
// (the first contacts, every rejected row by its number) before anything is made; then
// Start campaign makes it.

import { h, fill, table } from './dom.js';
import { get, post, ApiError } from './api.js';

function labelled(id, text, control) {
  control.id = id;
  return h('label', { for: id }, text, control);
}

export async function show(main) {
  const [phones, agents] = await Promise.all([
    get('/phones').catch(() => ({ phones: [] })),
    get('/agents').catch(() => ({ agents: [] })),
  ]);
  const name = h('input', { type: 'text', required: true, maxlength: 100 });
  const file = h('input', { type: 'file', accept: '.csv,text/csv', required: true });
  const from = h('select', {}, h('option', { value: '' }, 'the environment\'s (EXOTEL_CALLER_ID)'),
    phones.phones.map((p) => h('option', { value: p.number }, p.number)));
  const agent = h('select', {}, h('option', { value: '' }, 'the phone\'s or BOT'),
    agents.agents.map((a) => h('option', { value: a.name }, a.name)));
  const number = (min, max) => h('input', { type: 'number', min, max, inputmode: 'numeric' });
  const maxConcurrent = number(1, 1000);
  const callsPerMinute = number(1, 6000);
  const retryAttempts = number(0, 10);
  const windowStart = h('input', { type: 'time' });
  const windowEnd = h('input', { type: 'time' });
  const timezone = h('input', { type: 'text', placeholder: 'Asia/Kolkata' });
  const check = h('button', { type: 'submit' }, 'Check contacts');
  const startButton = h('button', { type: 'button', disabled: true }, 'Start campaign');
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'settings' },
    labelled('campaign-name', 'Name', name),
    labelled('campaign-contacts', 'Contacts', file),
    labelled('campaign-from', 'Phone', from),
    labelled('campaign-agent', 'Agent', agent),
    labelled('campaign-max', 'Max concurrent', maxConcurrent),
    labelled('campaign-rate', 'Calls per minute', callsPerMinute),
    labelled('campaign-retries', 'Retry attempts', retryAttempts),
    labelled('campaign-window-start', 'Window start', windowStart),
    labelled('campaign-window-end', 'Window end', windowEnd),
    labelled('campaign-timezone', 'Timezone', timezone),
    check);

  function query(dryRun) {
    const q = new URLSearchParams();
    const set = (k, v) => { if (v !== '') q.set(k, v); };
    set('name', name.value.trim());
    set('from', from.value);
    set('agent', agent.value);
    set('maxConcurrent', maxConcurrent.value);
    set('callsPerMinute', callsPerMinute.value);
    set('retryAttempts', retryAttempts.value);
    set('windowStart', windowStart.value);
    set('windowEnd', windowEnd.value);
    set('timezone', timezone.value.trim());
    if (dryRun) q.set('dryRun', '1');
    return q;
  }

  function rejected(list, summary) {
    if (!list || list.length === 0) return h('p', { class: 'ok' }, 'Every row was taken.');
    return [h('h2', {}, 'Rejected rows'),
      h('ul', { class: 'rejected' }, list.map((r) => h('li', {}, `row ${r.row}: ${r.error}`))),
      summary && summary.count > list.length ? h('p', { class: 'muted' },
        `${summary.count} rows rejected in all (${Object.entries(summary.byReason || {}).map(([why, n]) => `${n} ${why}`).join(', ')}); the first ${list.length} are listed.`) : null];
  }

  async function send(dryRun) {
    const csv = await file.files[0].text();
    return post(`/campaigns?${query(dryRun)}`, csv, 'text/csv');
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    startButton.disabled = true;
    try {
      const preview = await send(true);
      const columns = preview.first.length ? Object.keys(preview.first[0].params) : [];
      fill(result,
        h('p', {}, `${preview.total} contacts will be called.`),
        table(['Number', ...columns], preview.first.map((c) => h('tr', {}, h('td', {}, c.to), columns.map((k) => h('td', {}, c.params[k]))))),
        rejected(preview.rejected, preview.rejectedSummary));
      startButton.disabled = false;
    } catch (e) {
      const body = e instanceof ApiError ? e.body : null;
      fill(result, h('p', { class: 'error', role: 'alert' }, e.message), body ? rejected(body.rejected, body.rejectedSummary) : null);
    }
  });
  for (const control of form.elements) control.addEventListener('change', () => { startButton.disabled = true; });
  startButton.addEventListener('click', async () => {
    startButton.disabled = true;
    try {
      const created = await send(false);
      location.hash = `#/campaigns/${encodeURIComponent(created.id)}`;
    } catch (e) {
      fill(result, h('p', { class: 'error', role: 'alert' }, e.message));
    }
  });
  fill(main, h('h1', {}, 'New campaign'),
    h('p', { class: 'muted' }, 'A CSV with a header row: a column "to" with the numbers, and a column for each {{name}} the agent\'s prompt uses.'),
    form, result, startButton);
}
