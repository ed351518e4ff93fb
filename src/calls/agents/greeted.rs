//! An in-process bot with its agent's greeting played first.

use super::Agent;
use std::sync::Arc;

/// The bot an agent gives a call in process, its greeting played first.
pub struct Greeted {
    pub inner: Box<dyn crate::bot::Bot>,
    pub greeting: Arc<Agent>,
}

impl crate::bot::Bot for Greeted {
    fn on_start(&mut self, call: &crate::bot::CallStart<'_>, out: &mut crate::bot::Outbox) {
        if let Some((rate, samples)) = &self.greeting.greeting {
            out.play(&resample(samples, *rate, out.sample_rate()));
        }
        self.inner.on_start(call, out);
    }
    fn on_audio(&mut self, samples: &[i16], out: &mut crate::bot::Outbox) {
        self.inner.on_audio(samples, out);
    }
    fn on_dtmf(&mut self, digit: char, out: &mut crate::bot::Outbox) {
        self.inner.on_dtmf(digit, out);
    }
    fn on_mark(&mut self, name: &str, out: &mut crate::bot::Outbox) {
        self.inner.on_mark(name, out);
    }
    fn on_stop(&mut self, reason: &str) {
        self.inner.on_stop(reason);
    }
}

/// `samples` at `from` Hz as `to` Hz (linear; once per call, at its start).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..n)
        .map(|i| {
            let at = i as f64 * f64::from(from) / f64::from(to);
            let j = at.floor() as usize;
            let frac = at - j as f64;
            let a = f64::from(samples[j.min(samples.len() - 1)]);
            let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_the_length_in_time() {
        let s: Vec<i16> = (0..160).map(|i| i as i16).collect();
        let up = resample(&s, 8000, 16000);
        assert_eq!(up.len(), 320);
        assert_eq!((up[0], up[2], up[3]), (0, 1, 2));
        assert_eq!(resample(&up, 16000, 8000), s);
    }
}
