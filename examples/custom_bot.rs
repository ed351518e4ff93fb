//! Your own bot in front of Exotel: greets the caller with a tone, then beeps back every key
//! they press, and hangs up on `#` once its goodbye has played.
//!
//! `cargo run --example custom_bot`, then `cargo run -- simulate --no-echo-check --dtmf 12#` in
//! another terminal (`--no-echo-check`: this bot beeps, it does not echo). Like `serve`, it
//! drains live calls on SIGTERM and reloads its certificate on SIGHUP.

use exotel_voicebot::bot::{Bot, CallStart, Outbox};
use exotel_voicebot::media::audio::tone;

struct Beeper;

impl Bot for Beeper {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play(&tone(call.start.sample_rate, 523.0, 400, 6000));
    }
    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
    fn on_dtmf(&mut self, digit: char, out: &mut Outbox) {
        let hz = 600.0 + 50.0 * digit.to_digit(10).unwrap_or(10) as f32;
        out.play(&tone(out.sample_rate(), hz, 200, 6000));
        if digit == '#' {
            out.mark("bye");
        }
    }
    fn on_mark(&mut self, name: &str, out: &mut Outbox) {
        if name == "bye" {
            out.hang_up();
        }
    }
}

fn main() -> std::io::Result<()> {
    let config = exotel_voicebot::config::Config::from_env().map_err(std::io::Error::other)?;
    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(Beeper) };
    let signals = exotel_voicebot::signals()?;
    exotel_voicebot::start(config, Box::new(bots))?.serve_signals(signals);
    Ok(())
}
