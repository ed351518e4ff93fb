//! `cargo fuzz run chunked`: see `exotel_voicebot::fuzzing::chunked`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exotel_voicebot::fuzzing::chunked(data);
});
