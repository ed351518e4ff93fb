//! A bot of the user's own, run through the library API (`exotel_voicebot::start`), as
//! `examples/custom_bot.rs` does: a greeting, a mark when it has been played, a hang-up.

use exotel_voicebot::bot::{Bot, CallStart, Outbox};
use exotel_voicebot::config::Config;
use exotel_voicebot::media::audio::{speech_like, tone};
use exotel_voicebot::sim::{run_call, CallPlan, CallReport, EndedBy};
use std::sync::{Arc, Mutex};

struct Greeter {
    heard: Arc<Mutex<Vec<String>>>,
}

impl Bot for Greeter {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        self.heard.lock().unwrap().push(format!(
            "start {} {}",
            call.call_log_id, call.start.sample_rate
        ));
        out.play(&tone(call.start.sample_rate, 523.0, 700, 6000));
        out.mark("greeting-done");
    }
    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
    fn on_mark(&mut self, name: &str, out: &mut Outbox) {
        self.heard.lock().unwrap().push(format!("mark {name}"));
        out.hang_up();
    }
    fn on_stop(&mut self, reason: &str) {
        self.heard.lock().unwrap().push(format!("stop {reason}"));
    }
}

/// A server on a free loopback port with its own data directory, as a library user starts one.
fn loopback_config(name: &str) -> Config {
    loopback_config_with(name, &[])
}

/// The same with more variables.
fn loopback_config_with(name: &str, extra: &[(&str, &str)]) -> Config {
    let data_dir =
        std::env::temp_dir().join(format!("exotel-voicebot-{name}-{}", std::process::id()));
    Config::from_lookup(|var| match var {
        "PORT" => Some("0".into()),
        "BIND" => Some("127.0.0.1".into()),
        "DATA_DIR" => Some(data_dir.display().to_string()),
        _ => extra
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap()
}

#[test]
fn a_custom_bot_greets_marks_and_hangs_up() {
    // Quiet unless the test fails: the server runs in this process.
    let _logs = exotel_voicebot::log::Captured::start();
    let config = loopback_config("libbot");
    let heard = Arc::new(Mutex::new(Vec::new()));
    let for_bots = heard.clone();
    let bots = move |_: &CallStart<'_>| -> Box<dyn Bot> {
        Box::new(Greeter {
            heard: for_bots.clone(),
        })
    };
    let running = exotel_voicebot::start(config, Box::new(bots)).unwrap();

    let mut plan = CallPlan::new(running.addr, speech_like(8000, 3000, 9));
    plan.echo_delay_ms = 0;
    let report = run_call(&plan);
    assert_eq!(report.marks_received, ["greeting-done"]);
    assert_eq!(report.marks_echoed, 1);
    assert_eq!(
        report.ended_by,
        EndedBy::Server(1000),
        "hung up once the greeting was played"
    );
    // 700 ms of tone, padded to whole 200 ms chunks: 4 chunks, the last padded with silence.
    assert_eq!(report.chunk_sizes.get(&3200), Some(&4));
    assert_eq!(report.bot_audio.len(), 6400);
    assert!(
        report.bot_audio[5600..].iter().all(|&s| s == 0),
        "the padding is silence"
    );
    // on_stop runs once the close handshake is over, just after the caller saw the close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while heard.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 3, "{heard:?}");
    assert!(heard[0].starts_with(&format!("start {} 8000", report.call_log_id)));
    assert_eq!(heard[1..], ["mark greeting-done", "stop bot-hung-up"]);
}

/// The example's bot (`examples/custom_bot.rs`): a greeting tone, a beep per key.
struct Beeper;

impl Bot for Beeper {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play(&tone(call.start.sample_rate, 523.0, 400, 6000));
    }
    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
    fn on_dtmf(&mut self, _digit: char, out: &mut Outbox) {
        out.play(&tone(out.sample_rate(), 700.0, 200, 6000));
    }
}

#[test]
fn the_examples_simulate_line_passes_with_no_echo_check() {
    let _logs = exotel_voicebot::log::Captured::start();
    let config = loopback_config("beeper");
    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(Beeper) };
    let running = exotel_voicebot::start(config, Box::new(bots)).unwrap();
    let simulate = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
            .env_clear()
            .args([
                "simulate",
                "--server",
                &running.addr.to_string(),
                "--dtmf",
                "12#",
                "--seconds",
                "1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    // What the example's doc suggests: the protocol is checked, the beeps are not an echo.
    let out = simulate(&["--no-echo-check"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the flag the same call is reported as not echoed: the flag is what makes it pass.
    assert_eq!(simulate(&[]).status.code(), Some(1));
}

/// A bot with a bug where its call ends: it greets, hangs up, and panics in `on_stop`.
struct PanicsAtStop;

impl Bot for PanicsAtStop {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play(&tone(call.start.sample_rate, 440.0, 300, 6000));
        out.mark("greeted");
    }
    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
    fn on_mark(&mut self, _name: &str, out: &mut Outbox) {
        out.hang_up();
    }
    fn on_stop(&mut self, _reason: &str) {
        panic!("a bug in the bot's own on_stop");
    }
}

/// The user's bot panicking as its call ends costs that call only. All calls share one media
/// loop (`MEDIA_LOOPS=1`): a call beside it and a call after it are served whole, and every
/// call's place is given back.
#[test]
fn a_bot_that_panics_as_its_call_ends_costs_that_call_only() {
    let _logs = exotel_voicebot::log::Captured::start();
    let config = loopback_config_with("panicky", &[("MEDIA_LOOPS", "1")]);
    let bots = |call: &CallStart<'_>| -> Box<dyn Bot> {
        if call.start.call_sid == "CA-panics" {
            Box::new(PanicsAtStop)
        } else {
            Box::new(exotel_voicebot::bot::echo::EchoBot::new(400))
        }
    };
    let running = exotel_voicebot::start(config, Box::new(bots)).unwrap();
    let panicked = a_panic_beside_and_before_calls(&running);
    assert_eq!(panicked.marks_echoed, 1, "{panicked:#?}");
}

/// A relayed call whose bot cannot be reached gets `BOT_FALLBACK=echo`'s bot, made by the
/// user's factory on the media loop once the dial has failed. A factory that panics there costs
/// that call only: a call beside it and one after it (all on one loop) get their fallback and
/// are served whole, and every call's place is given back.
#[test]
fn a_fallback_bot_that_panics_as_it_is_made_costs_that_call_only() {
    let _logs = exotel_voicebot::log::Captured::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bot_url = format!("ws://{}/bot", closed.local_addr().unwrap());
    drop(closed);
    let config = loopback_config_with(
        "panicky-fallback",
        &[
            ("MEDIA_LOOPS", "1"),
            ("BOT", "relay"),
            ("BOT_URL", &bot_url),
            ("BOT_FALLBACK", "echo"),
        ],
    );
    let bots = |call: &CallStart<'_>| -> Box<dyn Bot> {
        if call.start.call_sid == "CA-panics" {
            panic!("a bug in the bot factory");
        }
        Box::new(exotel_voicebot::bot::echo::EchoBot::new(400))
    };
    let running = exotel_voicebot::start(config, Box::new(bots)).unwrap();
    let panicked = a_panic_beside_and_before_calls(&running);
    assert_ne!(panicked.ended_by, EndedBy::Caller, "{panicked:#?}");
}

/// The call `CA-panics` (whose bot panics) with an echo call beside it and one after it, all
/// on `running`'s one media loop: the other two are served whole and every call's place is
/// given back. Returns the panicking call's report.
fn a_panic_beside_and_before_calls(running: &exotel_voicebot::Running) -> CallReport {
    let echo_plan = |ms| {
        let mut plan = CallPlan::new(running.addr, speech_like(8000, ms, 4));
        plan.tail_ms = 800;
        plan
    };
    let beside = {
        let plan = echo_plan(3000);
        std::thread::spawn(move || run_call(&plan))
    };
    let mut panics = CallPlan::new(running.addr, speech_like(8000, 2000, 5));
    panics.call_sid = "CA-panics".into();
    panics.check_echo = false;
    let panicked = run_call(&panics);
    let after = run_call(&echo_plan(1000));
    assert!(after.is_clean(), "a call after the panic: {after:#?}");
    let beside = beside.join().unwrap();
    assert!(beside.is_clean(), "a call beside the panic: {beside:#?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while running.app.registry.active_calls() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a call kept its place"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panicked
}

/// Echoes the caller as the echo bot does (behind 400 ms of silence, so that the audio comes
/// back in whole chunks), but with one sample changed: the load generator must see it.
struct OffByOne {
    heard: usize,
}

/// The caller sample [`OffByOne`] changes.
const CHANGED_SAMPLE: usize = 1000;

impl Bot for OffByOne {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play_silence(call.start.sample_rate as usize * 400 / 1000);
    }
    fn on_audio(&mut self, samples: &[i16], out: &mut Outbox) {
        let mut echo = samples.to_vec();
        if let Some(s) = CHANGED_SAMPLE
            .checked_sub(self.heard)
            .and_then(|i| echo.get_mut(i))
        {
            *s = s.wrapping_add(1);
        }
        self.heard += samples.len();
        out.play(&echo);
    }
}

/// A load keeps the bot's audio of its first call only and checks every call's echo as it
/// arrives: one changed sample is found in each call, kept or not, and nothing else is.
#[test]
fn a_load_finds_one_changed_sample_in_every_call_whether_or_not_it_keeps_the_audio() {
    let _logs = exotel_voicebot::log::Captured::start();
    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(OffByOne { heard: 0 }) };
    let running = exotel_voicebot::start(loopback_config("offbyone"), Box::new(bots)).unwrap();
    let audio = speech_like(8000, 2000, 4);
    let plan = CallPlan::new(running.addr, audio.clone());
    let load = exotel_voicebot::sim::run_load(&plan, 3, std::time::Duration::from_millis(300));
    assert_eq!(load.calls.len(), 3);
    for (i, call) in load.calls.iter().enumerate() {
        assert_eq!(call.echo_mismatched, 1, "call {i}: {call:#?}");
        assert_eq!(call.echo_missing, 0, "call {i}");
        assert_eq!(call.echoed, audio.len() - 1, "call {i}");
        assert!(!call.is_clean(), "call {i}: a changed sample is a problem");
        assert!(call.bot_samples >= audio.len(), "call {i}");
    }
    let kept = &load.calls[0].bot_audio;
    assert_eq!(
        kept.len(),
        load.calls[0].bot_samples,
        "the first call's audio is kept"
    );
    let echo = &kept[3200..];
    assert_eq!(echo[CHANGED_SAMPLE], audio[CHANGED_SAMPLE].wrapping_add(1));
    assert_eq!(echo[..CHANGED_SAMPLE], audio[..CHANGED_SAMPLE]);
    assert!(
        load.calls[1..].iter().all(|c| c.bot_audio.is_empty()),
        "the other calls keep none"
    );
}
