//! Bots that play one short tone and hang up once Exotel has played it: what an inbound call
//! hears when every slot is taken (its row is `rejected-capacity`), and what a relayed call
//! hears when its bot cannot be reached (`bot-unavailable`, with `BOT_FALLBACK=hangup`).

use super::{Bot, CallStart, Outbox};

pub struct ToneThenHangUp {
    hz: f32,
    ms: u32,
    /// The mark sent after the tone; Exotel echoing it means the tone was heard.
    mark: &'static str,
}

impl ToneThenHangUp {
    /// Every slot is taken: a low tone.
    pub fn capacity() -> ToneThenHangUp {
        ToneThenHangUp {
            hz: 350.0,
            ms: 600,
            mark: "capacity-tone-played",
        }
    }

    /// The relayed bot is unreachable: a higher, shorter tone, so the two can be told apart.
    pub fn bot_unavailable() -> ToneThenHangUp {
        ToneThenHangUp {
            hz: 480.0,
            ms: 400,
            mark: "bot-unavailable-tone-played",
        }
    }
}

impl Bot for ToneThenHangUp {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play(&crate::media::audio::tone(
            call.start.sample_rate,
            self.hz,
            self.ms,
            6000,
        ));
        out.mark(self.mark);
    }

    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}

    fn on_mark(&mut self, name: &str, out: &mut Outbox) {
        if name == self.mark {
            out.hang_up();
        }
    }
}
