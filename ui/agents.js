// Agents: named bot configurations; an agent's page, with Talk to this agent. Keys are
// write-only as in the API.

import { h, fill, table, facts } from './dom.js';
import { get, post, patch } from './api.js';
import { jsonForm } from './resource.js';
import { talkPanel } from './talk.js';

const EXAMPLE = '{\n  "name": "support",\n  "bot": "echo"\n}';

export async function showList(main) {
  const body = h('div');
  fill(main, h('h1', {}, 'Agents'), body);
  async function draw() {
    const { agents } = await get('/agents');
    fill(body,
      agents.length === 0 ? h('p', { class: 'muted' }, 'No agent yet: calls get the BOT of the environment.') :
        table(['Agent', 'Bot', 'Greeting'], agents.map((a) => h('tr', {},
          h('td', {}, h('a', { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name)),
          h('td', {}, a.bot),
          h('td', {}, a.greeting ? (typeof a.greeting === 'string' ? a.greeting : `${a.greeting.seconds.toFixed(1)} s of audio`) : '')))),
      h('h2', {}, 'Add an agent'),
      jsonForm('agent-new', 'Agent (JSON)', 'Add agent', EXAMPLE, (v) => post('/agents', v), draw));
  }
  await draw();
}

export async function showOne(main, _params, name) {
  const top = h('div');
  const talk = talkPanel(name);
  fill(main, top, talk);
  async function draw() {
    const a = await get(`/agents/${encodeURIComponent(name)}`);
    const shown = { ...a };
    delete shown.name;
    fill(top,
      h('h1', {}, `Agent ${a.name}`),
      facts(Object.entries(shown).map(([k, v]) => [k, typeof v === 'object' && v !== null ? JSON.stringify(v) : v])),
      h('h2', {}, 'Change it'),
      jsonForm('agent-change', 'Changes (JSON)', 'Save agent', '{\n}', (v) => patch(`/agents/${encodeURIComponent(name)}`, v), draw));
  }
  await draw();
  return () => talk.leave();
}
