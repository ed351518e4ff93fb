// The console's shell: sign-in, the navigation, and which view the address shows
// (#/live, #/calls, #/calls/ID, #/campaigns, #/campaigns/new, #/campaigns/ID, #/agents,
// #/agents/NAME, #/phones, #/dnc).

import { h, fill } from './dom.js';
import { api, setCsrf } from './api.js';
import * as live from './live.js';
import * as calls from './calls.js';
import * as call from './call.js';
import * as campaigns from './campaigns.js';
import * as newCampaign from './campaign-new.js';
import * as campaign from './campaign.js';
import * as agents from './agents.js';
import * as phones from './phones.js';
import * as dnc from './dnc.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const notice = document.getElementById('notice');
const signOutButton = document.getElementById('sign-out');
let leaveView = null;
let session = null;

const routes = [
  [/^\/live$/, live.show],
  [/^\/calls$/, calls.show],
  [/^\/calls\/([^/]+)$/, call.show],
  [/^\/campaigns$/, campaigns.show],
  [/^\/campaigns\/new$/, newCampaign.show],
  [/^\/campaigns\/([^/]+)$/, campaign.show],
  [/^\/agents$/, agents.showList],
  [/^\/agents\/([^/]+)$/, agents.showOne],
  [/^\/phones$/, phones.show],
  [/^\/dnc$/, dnc.show],
];

function say(text) {
  notice.hidden = !text;
  notice.textContent = text || '';
}

async function route() {
  if (leaveView) { leaveView(); leaveView = null; }
  if (!session || !session.signedIn) return;
  const hash = location.hash.replace(/^#/, '') || '/live';
  const [path, query] = hash.split('?');
  for (const link of nav.querySelectorAll('a')) {
    const here = path === link.getAttribute('href').slice(1) || path.startsWith(link.getAttribute('href').slice(1) + '/');
    if (here) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  const found = routes.find(([pattern]) => pattern.test(path));
  if (!found) { fill(main, h('h1', {}, 'Not found'), h('p', {}, `The console has no page ${path}.`)); return; }
  const args = path.match(found[0]).slice(1).map(decodeURIComponent);
  fill(main);
  try {
    leaveView = (await found[1](main, new URLSearchParams(query || ''), ...args)) || null;
  } catch (e) {
    fill(main, h('h1', {}, 'Something went wrong'), h('p', { class: 'error' }, e.message));
  }
  main.focus();
}

function showSignIn(message) {
  nav.hidden = true;
  signOutButton.hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { class: 'sign-in' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'API token', input),
    h('button', { type: 'submit' }, 'Sign in'),
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      session = await api('POST', '/ui/session', { token: input.value });
      input.value = '';
      start();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  fill(main, form);
  input.focus();
}

function start() {
  setCsrf(session.csrf);
  nav.hidden = false;
  signOutButton.hidden = !session.tokenRequired;
  say(session.tokenRequired ? '' : 'API_TOKEN is not set: this console, like the API, answers browsers on this machine only. Set API_TOKEN to sign in from elsewhere.');
  if (!location.hash) location.hash = '#/live'; else route();
}

signOutButton.addEventListener('click', async () => {
  await api('DELETE', '/ui/session').catch(() => {});
  session = null;
  setCsrf(null);
  if (leaveView) { leaveView(); leaveView = null; }
  showSignIn('Signed out.');
});

window.addEventListener('signed-out', () => {
  if (session && session.tokenRequired) { session = null; showSignIn('Your session has ended: sign in again.'); }
});
window.addEventListener('hashchange', route);

(async () => {
  try {
    session = await api('GET', '/ui/session');
  } catch (e) {
    fill(main, h('p', { class: 'error' }, `The server did not answer: ${e.message}`));
    return;
  }
  if (session.signedIn) start(); else showSignIn();
})();
