//! `BOT_PROTOCOL=twilio` end to end: the real binary between the simulated Exotel caller and an
//! upstream bot that speaks Twilio Media Streams (`exotel_voicebot::sim::twilio_bot`, a real
//! WebSocket server on loopback written from Twilio's message shapes).

use crate::support;

use exotel_voicebot::media::audio::tone;
use exotel_voicebot::sim::twilio_bot::TwilioBot;
use exotel_voicebot::sim::{run_call, CallPlan};
use std::time::Duration;

fn energy(samples: &[i16]) -> f64 {
    samples.iter().map(|s| f64::from(*s).powi(2)).sum()
}

#[test]
fn a_bot_written_for_twilio_gets_twilios_frames_and_the_caller_hears_it() {
    for rate in [8000, 16000] {
        let bot = TwilioBot::start();
        let server = support::relay_server(&bot.url(), &[("BOT_PROTOCOL", "twilio")]);
        let caller = tone(rate, 440.0, 1000, 8000);
        let mut plan = CallPlan::new(server.addr, caller.clone());
        plan.sample_rate = rate;
        plan.check_echo = false;
        plan.keep_bot_audio = true;
        plan.dtmf = "1".into();
        plan.tail_ms = 800;
        let report = run_call(&plan);
        assert_eq!(
            report.invalid_chunks, 0,
            "{rate}: Exotel's chunk rules kept"
        );
        let seen = bot.wait_stopped(Duration::from_secs(10));
        let events: Vec<&str> = seen.iter().filter_map(|m| m["event"].as_str()).collect();
        assert_eq!(&events[..2], ["connected", "start"], "{rate}: {events:?}");
        assert_eq!(events.last(), Some(&"stop"), "{rate}: {events:?}");

        // Twilio's start: its ids and the audio format it promises.
        let start = &seen[1];
        let sid = start["streamSid"].as_str().unwrap();
        assert_eq!(start["start"]["streamSid"], sid);
        assert!(!start["start"]["callSid"].as_str().unwrap().is_empty());
        assert_eq!(
            start["start"]["mediaFormat"],
            serde_json::json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
        );
        assert!(start["start"]["customParameters"].is_object(), "{start}");

        // 20 ms of μ-law a frame, numbered and timed in order, one second's worth.
        let media: Vec<&serde_json::Value> =
            seen.iter().filter(|m| m["event"] == "media").collect();
        assert!(
            (48..=50).contains(&media.len()),
            "{rate}: {} frames",
            media.len()
        );
        let mut sequence = 0;
        for (i, m) in media.iter().enumerate() {
            assert_eq!(m["streamSid"], sid);
            assert_eq!(m["media"]["track"], "inbound");
            assert_eq!(m["media"]["chunk"], (i + 1).to_string());
            assert_eq!(m["media"]["timestamp"], (i * 20).to_string());
            let payload = m["media"]["payload"].as_str().unwrap();
            use base64::Engine as _;
            let law = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap();
            assert_eq!(law.len(), 160);
            let n: u64 = m["sequenceNumber"].as_str().unwrap().parse().unwrap();
            assert!(n > sequence, "sequence numbers rise");
            sequence = n;
        }
        // The key reached the bot as Twilio's dtmf; its mark came back to the caller, and the
        // caller's echo of it reached the bot as Twilio's mark.
        assert!(seen
            .iter()
            .any(|m| m["event"] == "dtmf" && m["dtmf"]["digit"] == "1"));
        assert_eq!(report.marks_received, ["m1"], "{rate}");
        assert!(seen
            .iter()
            .any(|m| m["event"] == "mark" && m["mark"]["name"] == "m1"));

        // The caller heard the bot's μ-law at the call's rate, at the level it was sent
        // (μ-law and the resampler keep a tone's energy within half a decibel or so).
        let level_db = 10.0 * (energy(&report.bot_audio) / energy(&caller)).log10();
        eprintln!("{rate} Hz: the Twilio bot's echo came back at {level_db:+.2} dB");
        assert!(
            level_db.abs() < 1.0,
            "{rate}: the echo at {level_db:+.2} dB"
        );
    }
}
