//! Answers bounded whatever the upload: a 16 MiB upload's answer and peak memory.

use super::*;

/// A CSV of about `bytes` bytes: a `to` header, then `row(i)` per line.
fn csv_of(bytes: usize, row: impl Fn(usize) -> String) -> Vec<u8> {
    let mut out = b"to\n".to_vec();
    let mut i = 0;
    while out.len() < bytes {
        out.extend_from_slice(row(i).as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Posts `body` with the operator's token and answers the answer and the server's peak RSS
/// growth over its RSS before, in KiB.
fn upload_peak(server: &Server, path: &str, body: &[u8]) -> (support::TestResponse, u64) {
    let (_, before) = peak_and_rss_kib(server);
    let mut conn = support::Conn::open(server.addr);
    // A million contacts are a few seconds' work, many more on a machine busy with other
    // tests: the answer is waited for longer than a hang detector's usual 15 s.
    conn.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(180)))
        .unwrap();
    conn.send(&support::request_bytes(
        "POST",
        path,
        &[("Content-Type", "text/csv"), ("Authorization", BEARER)],
        body,
    ));
    let r = conn.read_response();
    let (peak, _) = peak_and_rss_kib(server);
    (r, peak.saturating_sub(before))
}

#[test]
fn one_upload_gives_a_bounded_answer_and_a_bounded_peak() {
    const SIZE: usize = 16 << 20;
    let repeated_bad = csv_of(SIZE - 64, |_| "12345".to_owned());
    let repeated_good = csv_of(SIZE - 64, |_| "+919876543210".to_owned());
    let distinct = csv_of(SIZE - 64, |i| format!("+9198{:08}", i));
    let mut report = Vec::new();
    for (name, body) in [
        ("repeated-invalid", &repeated_bad),
        ("repeated", &repeated_good),
        ("distinct", &distinct),
    ] {
        for path in [
            "/dnc",
            "/campaigns?name=big&days=mon,tue,wed,thu,fri,sat,sun",
        ] {
            // A fresh server each time, so that one upload's peak is its own.
            let server = Server::start(&[("API_TOKEN", TOKEN)]);
            server.assert_healthy();
            let (r, grew_kib) = upload_peak(&server, path, body);
            assert!(
                r.status == 200 || r.status == 201 || r.status == 400,
                "{path} {name}: {r:?}"
            );
            assert!(
                r.body.len() < 64 * 1024,
                "{path} {name}: a {} byte answer",
                r.body.len()
            );
            let json = r.json();
            let summary = if path == "/dnc" {
                &json["invalidSummary"]
            } else {
                &json["rejectedSummary"]
            };
            let listed = if path == "/dnc" {
                &json["invalid"]
            } else {
                &json["rejected"]
            };
            assert!(listed.as_array().unwrap().len() <= 100, "{json}");
            assert_eq!(
                summary["listed"],
                listed.as_array().unwrap().len(),
                "{summary}"
            );
            if name == "repeated-invalid" {
                let rows = body.iter().filter(|b| **b == b'\n').count() - 1;
                assert_eq!(summary["count"], rows, "{path}: {summary}");
                assert_eq!(summary["byReason"]["number"], rows, "{path}: {summary}");
            }
            report.push(format!("{path} {name}: peak +{} MiB", grew_kib / 1024));
            // A multiple of the upload's size: the body itself, and for distinct numbers the
            // list kept (do-not-call, as 8-byte keys), or every contact held until the
            // campaign's one transaction commits (docs/ARCHITECTURE.md says why).
            let times = if path == "/dnc" { 4 } else { 12 };
            assert!(grew_kib < times * (SIZE as u64 / 1024), "{report:?}");
        }
    }
    eprintln!("{}", report.join("\n"));
}
