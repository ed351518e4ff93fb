//! What an inbound call hears when every slot is taken: a short low tone, then a hang-up once
//! Exotel has played it. Its row is `rejected-capacity`.

use super::{Bot, CallStart, Outbox};

const PLAYED: &str = "capacity-tone-played";

pub struct CapacityBot;

impl Bot for CapacityBot {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play(&crate::media::audio::tone(
            call.start.sample_rate,
            350.0,
            600,
            6000,
        ));
        out.mark(PLAYED);
    }

    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}

    fn on_mark(&mut self, name: &str, out: &mut Outbox) {
        if name == PLAYED {
            out.hang_up();
        }
    }
}
