//! `RECORD=1` on the real binary: each call as a stereo WAV, caller left and bot right, aligned
//! in time; read back with `hound`, a standard WAV reader.

use crate::support;

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::{run_call, CallPlan};
use std::time::{Duration, Instant};
use support::Server;

#[test]
fn an_echo_call_is_recorded_caller_left_bot_right_in_time() {
    let server = Server::start(&[("RECORD", "1")]);
    let plan = CallPlan::new(server.addr, speech_like(8000, 3000, 7));
    let report = run_call(&plan);
    assert!(report.is_clean());
    let path = server
        .dir
        .join("data/recordings")
        .join(format!("{}.wav", report.call_log_id));
    let deadline = Instant::now() + Duration::from_secs(5);
    let row = loop {
        let row = server.get(&format!("/calls/{}", report.call_log_id)).json();
        if row["status"] == "completed" && path.exists() {
            break row;
        }
        assert!(Instant::now() < deadline, "{row}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(row["recordingPath"]
        .as_str()
        .unwrap()
        .ends_with(&format!("recordings/{}.wav", report.call_log_id)));
    // The writer closes the file when the session ends; give it a moment.
    let mut reader = loop {
        match hound::WavReader::open(&path) {
            Ok(r) if r.duration() as usize >= plan.audio.len() => break r,
            _ => assert!(Instant::now() < deadline, "the WAV was not finished"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    // The caller's audio, exactly, from the start of the file.
    assert_eq!(&left[..plan.audio.len()], &plan.audio[..]);
    // The bot (the echo) on the right, 400 ms behind the caller, give or take one chunk.
    let probe = &plan.audio[8000..8160];
    let at = right
        .windows(160)
        .position(|w| w == probe)
        .expect("the echo is on the right channel");
    let lag_ms = (at as i64 - 8000) / 8;
    assert!(
        (300..=600).contains(&lag_ms),
        "the echo lags the caller by {lag_ms} ms"
    );
}
