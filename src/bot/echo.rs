//! The echo bot (`BOT=echo`, the default): plays the caller's audio back after a short delay,
//! so a fresh install can be heard working. `#` says goodbye with a short tone and hangs up once
//! Exotel has played it; `*` clears what is queued (barge-in, for trying `clear`); `0`
//! ([`HANDOFF_KEY`]) hands the caller to a person, for trying a handoff flow.

/// The key that makes the echo bot hand the caller off.
pub const HANDOFF_KEY: char = '0';

use super::{Bot, CallStart, Outbox};

/// Name of the mark sent after the goodbye tone.
pub const GOODBYE_MARK: &str = "goodbye";

pub struct EchoBot {
    delay_ms: u32,
    saying_goodbye: bool,
}

impl EchoBot {
    pub fn new(delay_ms: u32) -> EchoBot {
        EchoBot {
            delay_ms,
            saying_goodbye: false,
        }
    }
}

impl Bot for EchoBot {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        // The delay is silence in front of the echo: the caller's audio comes back shifted by
        // exactly this much, sample for sample.
        let rate = call.start.sample_rate as u64;
        out.play_silence((rate * self.delay_ms as u64 / 1000) as usize);
    }

    fn on_audio(&mut self, samples: &[i16], out: &mut Outbox) {
        if !self.saying_goodbye {
            out.play(samples);
        }
    }

    fn on_dtmf(&mut self, digit: char, out: &mut Outbox) {
        match digit {
            '#' if !self.saying_goodbye => {
                self.saying_goodbye = true;
                out.clear();
                let rate = out.sample_rate();
                out.play(&crate::media::audio::tone(rate, 660.0, 150, 8000));
                out.play_silence(rate as usize / 20);
                out.play(&crate::media::audio::tone(rate, 440.0, 250, 8000));
                out.mark(GOODBYE_MARK);
            }
            '*' => out.clear(),
            HANDOFF_KEY if !self.saying_goodbye => {
                out.clear();
                out.hand_off("caller-asked");
            }
            _ => {}
        }
    }

    fn on_mark(&mut self, name: &str, out: &mut Outbox) {
        if name == GOODBYE_MARK {
            out.hang_up();
        }
    }
}
