//! `cargo fuzz run session`: see `exotel_voicebot::fuzzing::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exotel_voicebot::fuzzing::session(data);
});
