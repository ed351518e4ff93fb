//! Every seed input and every crash the fuzzers ever found (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`), run through the same entry points as `cargo fuzz`
//! (`exotel_voicebot::fuzzing`) on the stable toolchain, so a fixed crash stays fixed.

use std::path::Path;

/// Runs every input of `fuzz/seeds/<target>/` (which must hold some) and of
/// `fuzz/regressions/<target>/` (a folder made for a target's first fixed crash; the
/// `regressions` folder itself must exist, so that a moved or deleted one cannot pass).
fn run_all(target: &str, entry: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    assert!(
        root.join("regressions").is_dir(),
        "fuzz/regressions/ is missing: it holds the fixed crashes"
    );
    let mut ran = 0;
    for dir in ["seeds", "regressions"] {
        let folder = root.join(dir).join(target);
        let files = match std::fs::read_dir(&folder) {
            Ok(files) => files,
            Err(_) if dir == "regressions" => continue,
            Err(e) => panic!("{}: {e}", folder.display()),
        };
        for file in files {
            let path = file.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{} panicked", path.display());
            ran += 1;
        }
    }
    assert!(ran > 0, "no inputs for {target}");
}

#[test]
fn http_requests() {
    run_all("http_request", exotel_voicebot::fuzzing::http_request);
}

#[test]
fn bodies() {
    run_all("bodies", exotel_voicebot::fuzzing::bodies);
}

#[test]
fn chunked_bodies() {
    run_all("chunked", exotel_voicebot::fuzzing::chunked);
}

#[test]
fn stream_frames() {
    run_all("stream_frame", exotel_voicebot::fuzzing::stream_frame);
}

#[test]
fn sessions() {
    run_all("session", exotel_voicebot::fuzzing::session);
}
