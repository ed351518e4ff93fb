//! `cargo fuzz run http_request`: see `exotel_voicebot::fuzzing::http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exotel_voicebot::fuzzing::http_request(data);
});
