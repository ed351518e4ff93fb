//! `cargo fuzz run bodies`: see `exotel_voicebot::fuzzing::bodies`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exotel_voicebot::fuzzing::bodies(data);
});
