// A call: its facts, its status history as a timeline, its recording and its transcript,
// and the raw row folded away.

import { h, fill, facts, when } from './dom.js';
import { get } from './api.js';

export async function show(main, _params, id) {
  const c = await get(`/calls/${encodeURIComponent(id)}`);
  const transcript = await get(`/calls/${encodeURIComponent(id)}/transcript`).catch(() => ({ turns: [] }));
  const recording = c.recordingPath && c.endedAt
    ? h('section', {},
        h('h2', {}, 'Recording'),
        h('audio', { controls: true, preload: 'metadata', src: `/calls/${encodeURIComponent(id)}/recording` }),
        h('p', {}, h('a', { href: `/calls/${encodeURIComponent(id)}/recording`, download: `${id}.wav` }, 'Download the recording')))
    : h('p', { class: 'muted' }, c.recordingPath ? 'The recording is ready when the call ends.' : 'No recording (RECORD=1 records calls).');
  fill(main,
    h('h1', {}, `Call ${c.callLogId}`),
    facts([
      ['Status', c.status], ['Direction', c.direction], ['From', c.from], ['To', c.to],
      ['Caller id', c.callerId], ['Agent', c.agent], ['Bot', c.bot],
      ['Started', when(c.createdAtIso)], ['Answered', when(c.answeredAtIso)], ['Ended', when(c.endedAtIso)],
      ['Seconds', c.durationS], ['End reason', c.endReason], ['Handoff', c.handoff],
      ['Disconnected by', c.disconnectedBy], ['Last error', c.lastError],
      ['Frames in / out', `${c.framesIn} / ${c.framesOut}`], ['Keys pressed', c.dtmf],
      ['Exotel CallSid', c.callSid], ['Exotel StreamSid', c.streamSid],
      ['Exotel recording', c.exotelRecordingUrl],
    ]),
    h('h2', {}, 'Timeline'),
    h('ol', { class: 'timeline' }, (c.history || []).map((s) => h('li', {}, h('time', { datetime: s.atIso }, when(s.atIso)), ' ', s.status))),
    recording,
    h('h2', {}, 'Transcript'),
    transcript.turns.length === 0 ? h('p', { class: 'muted' }, 'No words were written for this call.') :
      h('ol', { class: 'transcript' }, transcript.turns.map((t) =>
        h('li', { class: t.role === 'agent' ? 'turn-agent' : 'turn-caller' }, h('strong', {}, `${t.role}: `), t.text))),
    h('details', {}, h('summary', {}, 'Raw row'), h('pre', {}, JSON.stringify(c, null, 2))));
}
