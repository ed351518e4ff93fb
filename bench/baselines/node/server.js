// Baseline for bench/compare: the echo job written the way the original Node.js server's stack
// (the `ws` package) writes it. Per chunk it does what exotel-voicebot's echo bot does: parse
// the JSON event, decode the base64 payload to PCM, queue it behind ECHO_DELAY_MS of silence,
// and send it back in Exotel-sized chunks (200 ms at 8 kHz, 100 ms otherwise, whole 20 ms
// frames), paced so that at most MEDIA_LEAD_MS of audio is ahead of real time; on `stop` it
// closes the socket. Same defaults as the Rust server (400 ms delay, 200 ms lead).
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 3000);
const delayMs = Number(process.env.ECHO_DELAY_MS || 400);
const leadMs = Number(process.env.MEDIA_LEAD_MS || 200);

function chunkRules(rate) {
  const frame = rate / 50;
  return { rate, frame, min: (rate * (rate === 8000 ? 200 : 100)) / 1000 };
}

class Call {
  constructor(ws) {
    this.ws = ws;
    this.streamSid = null;
    this.rules = null;
    this.queue = []; // Buffers of 16-bit PCM
    this.queued = 0; // bytes
    this.started = null; // pacer clock (ms), null after an underrun
    this.sentMs = 0;
    this.timer = null;
  }

  onMessage(data) {
    const event = JSON.parse(data);
    switch (event.event) {
      case 'start': {
        this.streamSid = event.stream_sid || event.start.stream_sid;
        const rate = Number(event.start.media_format.sample_rate) || 8000;
        this.rules = chunkRules(rate);
        this.push(Buffer.alloc(2 * Math.floor((rate * delayMs) / 1000)));
        break;
      }
      case 'media':
        if (this.rules) this.push(Buffer.from(event.media.payload, 'base64'));
        break;
      case 'stop':
        this.ws.close(1000);
        return;
      default:
        return;
    }
    this.sendDue();
  }

  push(pcm) {
    this.queue.push(pcm);
    this.queued += pcm.length;
  }

  take(bytes) {
    const out = Buffer.alloc(bytes);
    let at = 0;
    while (at < bytes) {
      const head = this.queue[0];
      const n = Math.min(head.length, bytes - at);
      head.copy(out, at, 0, n);
      at += n;
      if (n === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(n);
    }
    this.queued -= bytes;
    return out;
  }

  ahead(now) {
    if (this.started !== null && this.started + this.sentMs > now) {
      return this.started + this.sentMs - now;
    }
    this.started = null;
    this.sentMs = 0;
    return 0;
  }

  sendDue() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const r = this.rules;
    while (this.queued > 0 && this.ws.readyState === 1) {
      const now = performance.now();
      const ahead = this.ahead(now);
      if (ahead >= leadMs) {
        this.timer = setTimeout(() => this.sendDue(), ahead - leadMs);
        return;
      }
      const take = Math.min(this.queued / 2, r.min);
      if (take < r.min && ahead > 0) {
        // A short piece waits for more audio while Exotel still has some to play.
        this.timer = setTimeout(() => this.sendDue(), ahead);
        return;
      }
      const samples = Math.max(Math.ceil(take / r.frame) * r.frame, r.min);
      const pcm = Buffer.alloc(samples * 2);
      this.take(take * 2).copy(pcm);
      if (this.started === null) this.started = now;
      this.sentMs += (samples * 1000) / r.rate;
      this.ws.send(
        JSON.stringify({
          event: 'media',
          stream_sid: this.streamSid,
          media: { payload: pcm.toString('base64') },
        }),
      );
    }
  }

  close() {
    if (this.timer) clearTimeout(this.timer);
  }
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  const call = new Call(ws);
  ws.on('message', (data) => call.onMessage(data));
  ws.on('close', () => call.close());
  ws.on('error', () => call.close());
});
wss.on('listening', () => console.log(`node ws baseline on 127.0.0.1:${port}`));
