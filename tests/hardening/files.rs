//! Files and their modes: everything under DATA_DIR its user's alone, backups and retention that never follow a link.

use super::*;

/// Every file and directory under `root`, with its permission bits, links not followed.
fn modes_under(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let is_dir = meta.is_dir();
            out.push((entry.path(), meta.permissions().mode() & 0o777, is_dir));
            if is_dir {
                stack.push(entry.path());
            }
        }
    }
    out
}

/// A 16-bit PCM WAV of a quarter second of tone.
fn tone_wav(rate: u32) -> Vec<u8> {
    let samples = exotel_voicebot::media::audio::tone(rate, 440.0, 250, 8000);
    let mut out = Vec::new();
    exotel_voicebot::media::audio::write_wav(&mut out, rate, 1, &samples).unwrap();
    out
}

/// Runs the binary's `backup` under a shell's usual umask (022), in `dir`.
fn backup_to(dir: &std::path::Path, file: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" backup \"$1\""])
        .arg(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .arg(file)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn every_file_the_binary_creates_is_its_users_alone_and_backups_too() {
    let dir = support::temp_dir("modes");
    // Under a shell's usual umask, as a service manager or a login shell would start it.
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "umask 022 && exec \"$0\" serve",
        env!("CARGO_BIN_EXE_exotel-voicebot"),
    ]);
    let server = Server::start_command(command, dir.clone(), &[("RECORD", "on")]);
    let phone = json_request(
        &server,
        "POST",
        "/phones",
        r#"{"number": "08047112233", "apiKey": "k", "apiToken": "phone-token-on-disk", "sid": "acme"}"#,
    );
    assert_eq!(phone.status, 201, "{}", phone.json());
    let agent = json_request(
        &server,
        "POST",
        "/agents",
        r#"{"name": "greeter", "bot": "echo"}"#,
    );
    assert_eq!(agent.status, 201);
    let greeting = request(
        server.addr,
        "PUT",
        "/agents/greeter/greeting",
        &[("Content-Type", "audio/wav")],
        &tone_wav(8000),
    );
    assert_eq!(greeting.status, 200, "{}", greeting.json());
    for call in support::start_live_calls(&server, 1, 300) {
        call.join().unwrap();
    }
    let data = dir.join("data");
    wait_until("the call's recording", Duration::from_secs(10), || {
        std::fs::read_dir(data.join("recordings")).is_ok_and(|d| d.count() > 0)
    });
    // While the server runs, with the WAL holding the token.
    let seen = modes_under(&data);
    let names: Vec<String> = seen
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "calls.db",
        "calls.db-wal",
        "calls.db-shm",
        "recordings",
        "agents",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    for (path, mode, is_dir) in &seen {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    assert_eq!(modes_under(&dir.join("data")).len(), seen.len());
    let out = backup_to(&dir, "copy.db");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = modes_under(&dir)
        .into_iter()
        .find(|(p, _, _)| p.ends_with("copy.db"))
        .expect("the backup");
    assert_eq!(copy.1, 0o600, "the backup is {:o}", copy.1);
}

#[test]
fn a_backup_never_writes_through_a_link() {
    let server = Server::start(&[]);
    server.assert_healthy();
    let dir = server.dir.clone();
    let target = dir.join("elsewhere.db");
    std::os::unix::fs::symlink(&target, dir.join("dangling.db")).unwrap();
    let out = backup_to(&dir, "dangling.db");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the file exists (or is a link)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists(), "the backup wrote through the link");
    assert!(std::fs::symlink_metadata(dir.join("dangling.db"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Leaves ended rows `ids` in `dir`'s call log, made ten days old, each naming the recording
/// path given; answers the time ten days ago.
fn old_rows_naming(
    dir: &std::path::Path,
    rows: &[(&str, &std::path::Path)],
) -> std::time::SystemTime {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-ret".into(),
    });
    let mut env = line_env(&fake);
    // The placed calls stay ringing: no grace for them at this shutdown.
    env.push(("SHUTDOWN_GRACE_S", "0".into()));
    {
        let server = Server::start_in(dir.to_path_buf(), &as_refs(&env));
        for (id, _) in rows {
            let placed = server.post_json(
                "/call",
                &format!(r#"{{"to": "+919876543210", "callLogId": "{id}"}}"#),
            );
            assert_eq!(placed.status, 200, "{placed:?}");
        }
        server.signal("TERM");
        let (code, _) = server.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0));
    }
    let ten_days_ago = std::time::SystemTime::now() - Duration::from_secs(10 * 86_400);
    let old_ms = ten_days_ago
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let db = rusqlite::Connection::open(dir.join("data/calls.db")).unwrap();
    for (id, path) in rows {
        let changed = db
            .execute(
                "UPDATE calls SET created_at = ?1, status = 'completed', recording_path = ?2 WHERE call_log_id = ?3",
                rusqlite::params![old_ms, path.to_str().unwrap(), id],
            )
            .unwrap();
        assert_eq!(changed, 1, "row {id}");
    }
    ten_days_ago
}

fn make_old(path: &std::path::Path, when: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn retention_deletes_only_its_own_wav_files_never_through_a_link() {
    let dir = support::temp_dir("retention-links");
    let outside = dir.join("shared");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim.wav");
    let linked = outside.join("linked.wav");
    let recordings = dir.join("data/recordings");
    let link = recordings.join("link.wav");
    let ours = recordings.join("ours.wav");
    let old = old_rows_naming(
        &dir,
        &[
            ("points-outside", &victim),
            ("points-at-link", &link),
            ("ours", &ours),
        ],
    );
    std::fs::create_dir_all(&recordings).unwrap();
    for file in [&victim, &linked, &ours] {
        std::fs::write(file, b"RIFF").unwrap();
        make_old(file, old);
    }
    std::os::unix::fs::symlink(&linked, &link).unwrap();
    let notes = recordings.join("notes.txt");
    std::fs::write(&notes, b"kept").unwrap();
    make_old(&notes, old);
    let server = Server::start_in(dir.clone(), &[("RETENTION_DAYS", "7")]);
    server.wait_for_log(&["retention.pruned", "calls=3", "recordings=1"]);
    server.wait_for_log(&["retention.left_alone", "files=2"]);
    assert!(!ours.exists(), "its own recording goes");
    assert!(
        victim.exists() && linked.exists(),
        "files outside DATA_DIR stay"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "a link is not followed or removed"
    );
    assert!(notes.exists(), "only *.wav files are recordings");
}

#[test]
fn retention_never_follows_a_linked_recordings_directory() {
    let dir = support::temp_dir("retention-linked-dir");
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let theirs = shared.join("theirs.wav");
    let named = shared.join("named.wav");
    let old = old_rows_naming(&dir, &[("named", &dir.join("data/recordings/named.wav"))]);
    for file in [&theirs, &named] {
        std::fs::write(file, b"RIFF").unwrap();
        make_old(file, old);
    }
    let _ = std::fs::remove_dir_all(dir.join("data/recordings"));
    std::os::unix::fs::symlink(&shared, dir.join("data/recordings")).unwrap();
    let server = Server::start_in(dir.clone(), &[("RETENTION_DAYS", "7")]);
    server.wait_for_log(&["retention.left_alone", "is a link"]);
    server.wait_for_log(&["retention.pruned", "calls=1", "recordings=0"]);
    assert!(
        theirs.exists() && named.exists(),
        "nothing deleted through the link"
    );
}
