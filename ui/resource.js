// The parts Phones and Agents share: a form of JSON fields sent as is, so that every field
// the API takes can be set here, and the API's own refusal shown when one is wrong.

import { h, fill } from './dom.js';
import { ApiError } from './api.js';

// A labelled textarea of JSON and a button; `send(object)` is the request.
export function jsonForm(id, label, button, initial, send, done) {
  const area = h('textarea', { id, rows: 6, spellcheck: 'false' });
  area.value = initial;
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'settings' }, h('label', { for: id }, label, area), h('button', { type: 'submit' }, button), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fill(error);
    let value;
    try { value = JSON.parse(area.value); } catch (e) { fill(error, `Not JSON: ${e.message}`); return; }
    try { await send(value); done(); } catch (e) {
      fill(error, e.message, e instanceof ApiError && e.body && e.body.error ? ` (${e.body.error})` : '');
    }
  });
  return form;
}
