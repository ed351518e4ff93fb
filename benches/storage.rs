//! The stored state at scale, on SQLite and on PostgreSQL in one run (docs/PERFORMANCE.md):
//! a campaign of `CONTACTS` contacts created by one CSV upload, `GET /calls` pages over
//! `ROWS` call rows (p50 and p99 of each kind of page, and the server's memory), and the
//! media path's cost with each database behind it (`LOAD` echo calls of `CALL_SECONDS`).
//! Loopback only; PostgreSQL is a cluster of the bench's own (`tests/support/postgres.rs`).
//! `cargo bench --bench storage` (`ROWS=1000000 CONTACTS=1000000 LOAD=200 CALL_SECONDS=10`).
//! Not run by CI: its figures are the machine's.

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::{run_load, CallPlan};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::{percentile, var, Server};

#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

/// A new empty directory for `name` (the PostgreSQL harness's data live in one too).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bench-storage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");
    dir
}

const TOKEN: &str = "bench-token";

/// Where the server keeps its state.
enum Backend {
    Sqlite(PathBuf),
    Postgres(postgres::Cluster),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("LOG_LEVEL", "error".to_owned()),
            ("MAX_CONCURRENT_CALLS", "100000".to_owned()),
            ("API_TOKEN", TOKEN.to_owned()),
            ("HTTP_MAX_UPLOAD_BYTES", (64 << 20).to_string()),
            ("HTTP_MAX_UPLOADS_HELD_BYTES", (64 << 20).to_string()),
            ("EXOTEL_API_KEY", "k".to_owned()),
            ("EXOTEL_API_TOKEN", "t".to_owned()),
            ("EXOTEL_SID", "bench".to_owned()),
            ("EXOTEL_SUBDOMAIN", "127.0.0.1:9".to_owned()),
            ("EXOTEL_API_BASE_URL", "http://127.0.0.1:9".to_owned()),
            ("EXOTEL_CALLER_ID", "08047112233".to_owned()),
        ];
        match self {
            Backend::Sqlite(dir) => env.push(("DATA_DIR", dir.display().to_string())),
            Backend::Postgres(pg) => env.push(("DATABASE_URL", pg.url.clone())),
        }
        env
    }

    /// `ROWS` ended calls written straight into the call log (the server stopped), as a
    /// year of traffic would leave them: numbers, statuses and agents spread out.
    fn fill_calls(&self, rows: usize) {
        let select = |series: &str| {
            format!(
                "INSERT INTO calls (call_log_id, direction, from_number, to_number, caller_id,
                     call_sid, status, created_at, ended_at, duration_s, agent)
                 SELECT 'bench-' || i, CASE WHEN i % 3 = 0 THEN 'inbound' ELSE 'outbound' END,
                     '+9198' || (10000000 + i % 9000000), '08047112233', '08047112233',
                     'CA' || i, CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 7 = 0 THEN 'no-answer'
                     ELSE 'completed' END, 1700000000000 + i * 1000, 1700000000000 + i * 1000 + 60000,
                     60, CASE WHEN i % 2 = 0 THEN 'sales' ELSE NULL END
                 FROM {series}"
            )
        };
        match self {
            Backend::Sqlite(dir) => {
                let db = rusqlite::Connection::open(dir.join("calls.db")).expect("calls.db");
                db.execute_batch(&format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
                     {}",
                    select("n")
                ))
                .expect("rows written");
            }
            Backend::Postgres(pg) => {
                pg.psql(&select(&format!("generate_series(1, {rows}) AS n(i)")));
                pg.psql("ANALYZE calls");
            }
        }
    }
}

/// `GET path` with the token; the answer's time in ms.
fn timed_get(server: &Server, path: &str) -> f64 {
    let started = Instant::now();
    let answer = minreq::get(format!("http://{}{path}", server.addr))
        .with_header("Authorization", format!("Bearer {TOKEN}"))
        .with_timeout(60)
        .send()
        .expect("an answer");
    assert_eq!(
        answer.status_code,
        200,
        "{path}: {}",
        answer.as_str().unwrap_or("")
    );
    started.elapsed().as_secs_f64() * 1e3
}

/// p50 and p99 of `n` answers to the paths `path(k)` gives.
fn pages(server: &Server, n: usize, path: impl Fn(usize) -> String) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..n).map(|k| timed_get(server, &path(k))).collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// A campaign of `contacts` numbers, uploaded as CSV, due only in 2099 (nothing dials): its
/// id and the upload's time in s.
fn create_campaign(server: &Server, contacts: usize) -> (String, f64) {
    let mut csv = String::with_capacity(contacts * 16 + 8);
    csv.push_str("to\n");
    for k in 0..contacts {
        csv.push_str(&format!("+9198{:08}\n", 10_000_000 + k % 89_999_999));
    }
    let started = Instant::now();
    let answer = minreq::post(format!(
        "http://{}/campaigns?name=bench&startAt=2099-01-01T00:00:00Z",
        server.addr
    ))
    .with_header("Authorization", format!("Bearer {TOKEN}"))
    .with_header("Content-Type", "text/csv")
    .with_body(csv)
    .with_timeout(600)
    .send()
    .expect("an answer");
    let took = started.elapsed().as_secs_f64();
    assert_eq!(answer.status_code, 201, "{}", answer.as_str().unwrap_or(""));
    let made: serde_json::Value = serde_json::from_str(answer.as_str().unwrap()).unwrap();
    (
        made["id"].as_str().expect("the campaign's id").to_owned(),
        took,
    )
}

/// Server CPU seconds per call-second over `calls` echo calls of `seconds`.
fn media_cost(server: &Server, calls: usize, seconds: u32) -> (f64, usize) {
    let mut plan = CallPlan::new(server.addr, speech_like(8000, seconds * 1000, 3));
    plan.check_echo = false;
    let before = server.cpu_s();
    let report = run_load(&plan, calls, Duration::from_secs(5));
    let used = server.cpu_s() - before;
    (
        used / (calls as f64 * f64::from(seconds)),
        report.clean_calls(),
    )
}

fn run(backend: &Backend, rows: usize, contacts: usize, load: usize, seconds: u32) {
    let name = backend.name();
    // Once to make the tables, then rows written with the server stopped.
    drop(Server::start("storage", name, &backend.env()));
    let filled = Instant::now();
    backend.fill_calls(rows);
    let filled = filled.elapsed().as_secs_f64();
    let server = Server::start("storage", name, &backend.env());
    let (rss_start, _) = server.rss_kib();
    let (campaign, created) = create_campaign(&server, contacts);
    let (rss_created, peak_created) = server.rss_kib();
    println!("{name}: {rows} call rows written in {filled:.1} s");
    println!(
        "{name}: a campaign of {contacts} contacts created in {created:.1} s; RSS {rss_start} KiB before, {rss_created} after (peak {peak_created})"
    );
    let n = 200;
    let newest = pages(&server, n, |_| "/calls?limit=50".into());
    let deep = pages(&server, n, |k| {
        format!("/calls?limit=50&before={}", 1 + (k * 7919 * 131) % rows)
    });
    let failed = pages(&server, n, |k| {
        format!(
            "/calls?limit=50&status=failed&before={}",
            1 + (k * 7919 * 131) % rows
        )
    });
    let agent = pages(&server, n, |_| "/calls?limit=50&agent=sales".into());
    let number = pages(&server, 20, |k| {
        format!("/calls?limit=50&number=98{}", 100 + k)
    });
    let contacts_page = pages(&server, n, |k| {
        format!(
            "/campaigns/{campaign}/calls?limit=50&after={}",
            k * 4999 % contacts
        )
    });
    let progress = pages(&server, 20, |_| format!("/campaigns/{campaign}"));
    for (what, (p50, p99)) in [
        ("newest page", newest),
        ("a page deep in the log (before=)", deep),
        ("status=failed", failed),
        ("agent=", agent),
        ("number= (part of a number, 20 asked)", number),
    ] {
        println!("{name}: GET /calls {what}: p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    for (what, (p50, p99)) in [
        ("/campaigns/{id}/calls, a page of contacts", contacts_page),
        ("/campaigns/{id}, its progress (20 asked)", progress),
    ] {
        println!("{name}: GET {what}: p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    let (rss, peak) = server.rss_kib();
    println!("{name}: RSS after the pages {rss} KiB (peak {peak})");
    let (per_call_s, clean) = media_cost(&server, load, seconds);
    println!(
        "{name}: media path {:.3} ms CPU per call-second ({clean}/{load} calls clean)",
        per_call_s * 1e3
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = var("ROWS", 1_000_000);
    let contacts = var("CONTACTS", 1_000_000);
    let load = var("LOAD", 200);
    let seconds = var("CALL_SECONDS", 10) as u32;
    let sqlite = Backend::Sqlite(temp_dir("sqlite"));
    run(&sqlite, rows, contacts, load, seconds);
    match postgres::Cluster::start("storage-bench") {
        Some(pg) => run(&Backend::Postgres(pg), rows, contacts, load, seconds),
        None => println!("postgres: not measured (PostgreSQL is not installed)"),
    }
}
