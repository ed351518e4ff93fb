// The microphone's samples, brought down to the call's rate (a box filter over each output
// sample's span, enough for speech at 8 or 16 kHz) and handed out as 16-bit PCM, 100 ms at a
// time, with the level of each block for the meter.

class MicToPcm extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.ratio = sampleRate / options.processorOptions.rate;
    this.block = new Int16Array(options.processorOptions.rate / 10);
    this.filled = 0;
    this.acc = 0;
    this.count = 0;
    this.pos = 0;
    this.energy = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      this.acc += channel[i];
      this.count += 1;
      this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        const v = Math.max(-1, Math.min(1, this.acc / this.count));
        this.acc = 0;
        this.count = 0;
        this.energy += v * v;
        this.block[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
        if (this.filled === this.block.length) {
          const level = Math.sqrt(this.energy / this.block.length);
          this.port.postMessage({ pcm: this.block.slice().buffer, level }, []);
          this.filled = 0;
          this.energy = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor('mic-to-pcm', MicToPcm);
