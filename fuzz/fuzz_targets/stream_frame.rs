//! `cargo fuzz run stream_frame`: see `exotel_voicebot::fuzzing::stream_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exotel_voicebot::fuzzing::stream_frame(data);
});
