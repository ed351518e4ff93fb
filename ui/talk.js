// Talk to this agent: a call from this browser's microphone to the agent, through the same
// media socket Exotel uses and in the same protocol (connected, start, media, mark, clear,
// stop; base64 16-bit PCM at the call's rate), so the call is a call like any other: its
// session, its bot, its row (direction "web").

import { h, fill } from './dom.js';
import { post } from './api.js';

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new Int16Array(bytes.buffer, 0, bytes.length >> 1);
}

export function talkPanel(agentName) {
  const start = h('button', { type: 'button' }, 'Talk to this agent');
  const hangUp = h('button', { type: 'button', class: 'quiet', hidden: true }, 'Hang up');
  const meterFill = h('div');
  const meter = h('div', { class: 'meter', role: 'meter', 'aria-label': 'Microphone level', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0 }, meterFill);
  const status = h('p', { role: 'status', id: 'talk-status' }, 'Uses this browser\'s microphone; nothing is dialed.');
  const counts = h('p', { class: 'muted', id: 'talk-counts' });
  let call = null;

  async function begin() {
    start.disabled = true;
    fill(status, 'Starting…');
    try {
      call = await open(agentName, {
        level(v) {
          const pct = Math.min(100, Math.round(v * 300));
          meterFill.style.width = `${pct}%`;
          meter.setAttribute('aria-valuenow', pct);
        },
        counts(sent, heard) { fill(counts, `Sent ${sent} audio frames, heard ${heard}.`); },
        ended(why) {
          fill(status, why);
          hangUp.hidden = true;
          start.disabled = false;
          meterFill.style.width = '0';
          call = null;
        },
      });
      fill(status, 'On the call ', h('a', { href: `#/calls/${encodeURIComponent(call.callLogId)}` }, call.callLogId), '.');
      hangUp.hidden = false;
      hangUp.focus();
    } catch (e) {
      fill(status, h('span', { class: 'error' }, `Could not start the call: ${e.message}`));
      start.disabled = false;
    }
  }

  start.addEventListener('click', begin);
  hangUp.addEventListener('click', () => call && call.hangUp('You hung up.'));
  const panel = h('section', { 'aria-labelledby': 'talk-heading' },
    h('h2', { id: 'talk-heading' }, 'Try it'), h('div', { class: 'row' }, start, hangUp, meter), status, counts);
  panel.leave = () => call && call.hangUp('Left the page.');
  return panel;
}

async function open(agentName, on) {
  const placed = await post(`/agents/${encodeURIComponent(agentName)}/web-call`);
  const rate = placed.sampleRate;
  const mic = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  const context = new AudioContext();
  await context.audioWorklet.addModule('mic-worklet.js');
  const source = context.createMediaStreamSource(mic);
  const worklet = new AudioWorkletNode(context, 'mic-to-pcm', { processorOptions: { rate } });
  source.connect(worklet);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}${placed.media}`);
  const streamSid = `web-${placed.callLogId}`;
  let sequence = 0, chunk = 0, sent = 0, heard = 0, playAt = 0, over = false;
  const playing = new Set();
  const send = (event) => { if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ sequence_number: String(++sequence), stream_sid: streamSid, ...event })); };

  socket.addEventListener('open', () => {
    socket.send(JSON.stringify({ event: 'connected' }));
    send({ event: 'start', start: { stream_sid: streamSid, call_sid: placed.callSid, account_sid: 'web', from: 'browser', to: agentName, custom_parameters: {}, media_format: { encoding: 'base64', sample_rate: String(rate), bit_rate: `${rate * 16 / 1000}kbps` } } });
  });
  worklet.port.onmessage = ({ data }) => {
    on.level(data.level);
    if (socket.readyState !== WebSocket.OPEN) return;
    send({ event: 'media', media: { chunk: String(++chunk), timestamp: String(chunk * 100), payload: toBase64(data.pcm) } });
    on.counts(++sent, heard);
  };
  socket.addEventListener('message', ({ data }) => {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame.event === 'media' && frame.media && frame.media.payload) {
      const pcm = fromBase64(frame.media.payload);
      const buffer = context.createBuffer(1, pcm.length, rate);
      const samples = buffer.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
      const node = context.createBufferSource();
      node.buffer = buffer;
      node.connect(context.destination);
      playAt = Math.max(playAt, context.currentTime + 0.05);
      node.start(playAt);
      playAt += buffer.duration;
      playing.add(node);
      node.onended = () => playing.delete(node);
      on.counts(sent, ++heard);
    } else if (frame.event === 'clear') {
      for (const node of playing) node.stop();
      playing.clear();
      playAt = 0;
    } else if (frame.event === 'mark' && frame.mark) {
      const wait = Math.max(0, playAt - context.currentTime) * 1000;
      setTimeout(() => send({ event: 'mark', mark: { name: frame.mark.name } }), wait);
    }
  });

  function finish(why) {
    if (over) return;
    over = true;
    worklet.port.onmessage = null;
    mic.getTracks().forEach((t) => t.stop());
    context.close();
    on.ended(why);
  }
  socket.addEventListener('close', () => finish('The call has ended.'));
  socket.addEventListener('error', () => finish('The media socket failed.'));
  return {
    callLogId: placed.callLogId,
    hangUp(why) {
      send({ event: 'stop', stop: { call_sid: placed.callSid, account_sid: 'web', reason: 'callended' } });
      socket.close(1000);
      finish(why);
    },
  };
}
