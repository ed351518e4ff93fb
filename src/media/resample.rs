//! Sample-rate conversion between Exotel's rates (8, 16, 24 kHz) and a service's (24 kHz for
//! speech-to-speech AI; 8 kHz for Twilio Media Streams): a streaming polyphase resampler with a
//! windowed-sinc low-pass filter, made once per call and direction. Audio arrives in chunks of
//! any length; the filter's history carries from one to the next, so a stream resampled in
//! pieces is the same as resampled whole. Its quality (SNR of tones both ways) is a test.

/// The filter's length in samples of the lower of the two rates: 48 at 8 kHz is 6 ms (3 ms of
/// delay), which puts the transition band within ±330 Hz of its centre, just under the lower
/// Nyquist rate. The window keeps the stopband under -90 dB.
const TAPS_AT_LOWER_RATE: usize = 48;

/// One direction of one call's audio from `from` Hz to `to` Hz.
pub struct Resampler {
    /// The ratio as the smallest whole numbers: `to / from = up / down`.
    up: usize,
    down: usize,
    /// Input samples each output's filter spans.
    taps: usize,
    /// `up` phases of `taps` coefficients each, phase-major.
    phases: Vec<f32>,
    /// The last input samples, newest last: what the next output's filter reaches back to.
    history: Vec<f32>,
    /// Where the next output falls, in input samples times `up`, counted from the start of
    /// `history`.
    position: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz (each a whole rate such as 8000 or 24000).
    pub fn new(from: u32, to: u32) -> Resampler {
        // A zero rate would make a step of nothing: `process` would never end.
        assert!(from > 0 && to > 0, "resampling {from} Hz to {to} Hz");
        let (from, to) = (from as usize, to as usize);
        let g = gcd(from, to);
        let (up, down) = (to / g, from / g);
        let taps = (TAPS_AT_LOWER_RATE * up.max(down)).div_ceil(up);
        let phases = design(up, down, taps);
        // The first output needs a full filter of history: silence before the stream.
        let history = vec![0.0; taps - 1];
        Resampler {
            up,
            down,
            taps,
            phases,
            history,
            position: (taps - 1) * up,
        }
    }

    /// Resamples `input`, appending what is due to `out` (about `input.len() * to / from`
    /// samples; the rest comes with the next chunk).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.up == 1 && self.down == 1 {
            out.extend_from_slice(input);
            return;
        }
        self.history.extend(input.iter().map(|s| f32::from(*s)));
        loop {
            let newest = self.position / self.up;
            if newest >= self.history.len() {
                break;
            }
            let phase = self.position % self.up;
            let taps = &self.phases[phase * self.taps..(phase + 1) * self.taps];
            // taps[j] weighs the input `j` samples before the newest one this output sees.
            let window = &self.history[newest + 1 - self.taps..=newest];
            let sum: f32 = taps
                .iter()
                .zip(window.iter().rev())
                .map(|(h, x)| h * x)
                .sum();
            out.push(sum.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16);
            self.position += self.down;
        }
        // Keep what the next output's filter reaches back to.
        let first_needed = (self.position / self.up + 1).saturating_sub(self.taps);
        self.history.drain(..first_needed);
        self.position -= first_needed * self.up;
    }
}

/// The polyphase filter bank: a low-pass just under the lower of the two Nyquist rates,
/// windowed by Blackman-Harris, split into `up` phases of `taps` with each phase's gain `up`
/// (what zero-stuffing took away).
fn design(up: usize, down: usize, taps: usize) -> Vec<f32> {
    let n = taps * up;
    // As fractions of the upsampled rate: the lower Nyquist rate, and the window's main lobe's
    // half width (4/n for Blackman-Harris). The cutoff sits three quarters of that below the
    // Nyquist rate, so little beyond it is left to fold back.
    let nyquist = 0.5 / up.max(down) as f64;
    let cutoff = nyquist - 0.75 * 4.0 / n as f64;
    let centre = (n as f64 - 1.0) / 2.0;
    let prototype: Vec<f64> = (0..n)
        .map(|k| {
            let t = k as f64 - centre;
            let sinc = if t == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
            };
            let x = 2.0 * std::f64::consts::PI * k as f64 / (n as f64 - 1.0);
            let window =
                0.35875 - 0.48829 * x.cos() + 0.14128 * (2.0 * x).cos() - 0.01168 * (3.0 * x).cos();
            sinc * window * up as f64
        })
        .collect();
    // Phase p's tap j is the prototype's p + j * up.
    let mut phases = vec![0.0f32; n];
    for p in 0..up {
        for j in 0..taps {
            phases[p * taps + j] = prototype[p + j * up] as f32;
        }
    }
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    /// The signal-to-noise ratio of `got` against a tone of `hz` at `rate`, fitted for its
    /// phase (the filter's delay) by least squares over the middle of the signal, and the
    /// fitted tone's amplitude.
    fn fit_tone(got: &[i16], rate: u32, hz: f64) -> (f64, f64) {
        let skip = got.len() / 5;
        let part = &got[skip..got.len() - skip];
        let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, y) in part.iter().enumerate() {
            let (s, c) = ((w * (i + skip) as f64).sin(), (w * (i + skip) as f64).cos());
            ss += s * s;
            sc += s * c;
            cc += c * c;
            ys += f64::from(*y) * s;
            yc += f64::from(*y) * c;
        }
        let det = ss * cc - sc * sc;
        let (a, b) = ((ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det);
        let (mut signal, mut noise) = (0.0, 0.0);
        for (i, y) in part.iter().enumerate() {
            let fit = a * (w * (i + skip) as f64).sin() + b * (w * (i + skip) as f64).cos();
            signal += fit * fit;
            noise += (f64::from(*y) - fit).powi(2);
        }
        (10.0 * (signal / noise).log10(), (a * a + b * b).sqrt())
    }

    fn snr_db(got: &[i16], rate: u32, hz: f64) -> f64 {
        fit_tone(got, rate, hz).0
    }

    fn resampled(from: u32, to: u32, input: &[i16], chunk: usize) -> Vec<i16> {
        let mut r = Resampler::new(from, to);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            r.process(piece, &mut out);
        }
        out
    }

    #[test]
    fn tones_keep_their_quality_through_every_conversion_a_call_needs() {
        // Speech's band at each rate, at -6 dBFS. The floor is 16-bit rounding (~ 98 dB for a
        // full-scale tone); the filter's ripple and stopband keep it above 60 dB.
        for (from, to) in [
            (8000, 24000),
            (24000, 8000),
            (16000, 24000),
            (24000, 16000),
            (16000, 8000),
            (8000, 16000),
        ] {
            for hz in [300.0, 1000.0, 3000.0] {
                let input = tone(from, hz, 1.0, 16000.0);
                let out = resampled(from, to, &input, 160);
                let expected = input.len() * to as usize / from as usize;
                assert!(
                    out.len().abs_diff(expected) <= 2 * TAPS_AT_LOWER_RATE,
                    "{from}->{to}: {} samples for {expected}",
                    out.len()
                );
                let (snr, amplitude) = fit_tone(&out, to, hz);
                let gain_db = 20.0 * (amplitude / 16000.0).log10();
                eprintln!(
                    "{from} -> {to} Hz, {hz} Hz tone: SNR {snr:.1} dB, gain {gain_db:+.2} dB"
                );
                assert!(snr > 60.0, "{from}->{to} at {hz} Hz: SNR {snr:.1} dB");
                // Flat through the telephone band: speech keeps its level and its colour.
                assert!(
                    gain_db.abs() < 0.5,
                    "{from}->{to} at {hz} Hz: {gain_db:+.2} dB"
                );
            }
        }
    }

    #[test]
    fn a_round_trip_through_24_khz_gives_the_tone_back() {
        for rate in [8000, 16000] {
            let input = tone(rate, 1000.0, 1.0, 16000.0);
            let there = resampled(rate, 24000, &input, 320);
            let back = resampled(24000, rate, &there, 480);
            let snr = snr_db(&back, rate, 1000.0);
            eprintln!("{rate} -> 24000 -> {rate} Hz, 1 kHz tone: SNR {snr:.1} dB");
            assert!(snr > 55.0, "{rate} Hz round trip: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn what_is_above_the_lower_nyquist_rate_is_filtered_out() {
        // 10 kHz at 24 kHz cannot exist at 8 kHz: it must not fold back in as 2 kHz.
        let input = tone(24000, 10000.0, 1.0, 16000.0);
        let out = resampled(24000, 8000, &input, 480);
        let rms = (out[800..]
            .iter()
            .map(|s| f64::from(*s).powi(2))
            .sum::<f64>()
            / (out.len() - 800) as f64)
            .sqrt();
        let level_db = 20.0 * (rms / (16000.0 / 2f64.sqrt())).log10();
        eprintln!("a 10 kHz tone at 24 kHz, taken to 8 kHz: {level_db:.1} dB left");
        assert!(level_db < -60.0, "an alias at {level_db:.1} dB");
    }

    #[test]
    #[should_panic(expected = "resampling 0 Hz to 8000 Hz")]
    fn a_zero_rate_is_refused_at_once_rather_than_resampled_forever() {
        Resampler::new(0, 8000);
    }

    #[test]
    fn chunks_of_any_size_give_the_same_samples_as_one() {
        let input = tone(16000, 440.0, 0.3, 12000.0);
        let whole = resampled(16000, 24000, &input, input.len());
        for chunk in [1, 7, 160, 333] {
            assert_eq!(
                resampled(16000, 24000, &input, chunk),
                whole,
                "chunks of {chunk}"
            );
        }
        // The same rate passes through untouched.
        assert_eq!(resampled(8000, 8000, &input, 50), input);
    }
}
