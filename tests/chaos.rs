//! Faults under load, on the real binary: well-behaved calls run while other clients drop
//! sockets mid-frame, half-close, send garbage and oversized frames, stop reading, abandon
//! handshakes, and flood the HTTP port with slow and malformed requests. Then: the server never
//! restarted, every well-behaved call completed with nothing lost, memory came back within 10%
//! of where it started, every file descriptor was released, and the call log has exactly one
//! row per call, each in a final state.
//!
//! In a file of its own: cargo runs test files one after another, and this one needs the
//! machine to itself for its real-time calls. About a minute and a half.

mod support;

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::{report::summary, run_load, CallPlan};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ws_connect, Server};
use tungstenite::Message;

/// How long the misbehaving clients keep at it, in each of two rounds: the first brings the
/// server to the high-water mark of this load, the second is measured against it.
const CHAOS: Duration = Duration::from_secs(20);
const GOOD_CALLS: usize = 60;

/// Every callLogId a client made a webhook request for: each must end with one final row.
type Ids = Arc<Mutex<BTreeSet<String>>>;

struct Chaos {
    server_addr: std::net::SocketAddr,
    /// Which round: part of every id, so the rounds' calls never share one.
    round: std::sync::atomic::AtomicUsize,
    ids: Ids,
    stop: Arc<AtomicBool>,
}

impl Chaos {
    /// A new call's media path, through the webhook as Exotel would ask for it.
    fn media_path(&self, id: &str) -> Option<String> {
        let r = support::request(
            self.server_addr,
            "GET",
            &format!("/voicebot/connect?CallSid=CA-{id}&CustomField={id}"),
            &[],
            b"",
        );
        if r.status != 200 {
            return None;
        }
        self.ids.lock().unwrap().insert(id.to_owned());
        let url = r.json()["url"].as_str()?.to_owned();
        Some(url[url.find("/media")?..].to_owned())
    }

    fn started(&self, id: &str) -> Option<tungstenite::WebSocket<TcpStream>> {
        let mut ws = ws_connect(self.server_addr, &self.media_path(id)?).ok()?;
        let start = format!(
            r#"{{"event":"start","stream_sid":"S-{id}","start":{{"call_sid":"CA-{id}"}}}}"#
        );
        ws.send(Message::text(start)).ok()?;
        Some(ws)
    }

    /// Runs `act` with fresh ids until the chaos is over; answers how many times it got to
    /// misbehave (the server took its connection and it did its damage), not how often it tried.
    fn keep_doing(
        self: &Arc<Self>,
        kind: &'static str,
        act: Actor,
    ) -> std::thread::JoinHandle<usize> {
        let me = self.clone();
        std::thread::spawn(move || {
            let (mut tried, mut done) = (0, 0);
            while !me.stop.load(Ordering::Relaxed) {
                let round = me.round.load(Ordering::Relaxed);
                if act(&me, &format!("chaos-{round}-{kind}-{tried}")) {
                    done += 1;
                }
                tried += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            done
        })
    }
}

fn media_frame(samples: usize) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![3u8; samples * 2]);
    format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#)
}

/// Drains a socket until it closes or 8 s pass.
fn drain(ws: &mut tungstenite::WebSocket<TcpStream>) {
    let _ = ws.get_ref().set_read_timeout(Some(Duration::from_secs(8)));
    while ws.read().is_ok() {}
}

fn drop_mid_frame(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    // A masked text frame that announces 1,000 bytes and brings 10.
    ws.get_mut()
        .write_all(&[0x81, 0xfe, 0x03, 0xe8, 1, 2, 3, 4])
        .and_then(|()| ws.get_mut().write_all(&[b'x'; 10]))
        .is_ok()
}

fn half_close(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    let sent = ws.send(Message::text(media_frame(800))).is_ok()
        && ws.get_ref().shutdown(Shutdown::Write).is_ok();
    drain(&mut ws);
    sent
}

fn garbage_frames(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let sent = ws.get_mut().write_all(&garbage).is_ok();
    drain(&mut ws);
    sent
}

fn oversized_frame(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    // The server may close as soon as the frame's header says its size: reaching it counts.
    let _ = ws.send(Message::text("x".repeat(2 << 20)));
    drain(&mut ws);
    true
}

fn bad_json(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    let mut sent = true;
    for text in [
        "not json",
        r#"{"event":"media","media":{"payload":"%%%"}}"#,
        r#"{"event":7}"#,
    ] {
        sent &= ws.send(Message::text(text)).is_ok();
    }
    sent &= ws.send(Message::binary(vec![1u8, 2, 3])).is_ok();
    let _ = ws.send(Message::text(r#"{"event":"stop"}"#));
    drain(&mut ws);
    sent
}

fn stop_reading(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    // A caller at real-time pace that never reads what the bot sends back.
    let frame = media_frame(800);
    for _ in 0..40 {
        if ws.send(Message::text(frame.as_str())).is_err() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn flood(c: &Chaos, id: &str) -> bool {
    let Some(mut ws) = c.started(id) else {
        return false;
    };
    // A second of 1 s frames as fast as loopback takes them, then gone.
    let frame = media_frame(8000);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sent = 0;
    while Instant::now() < until && ws.send(Message::text(frame.as_str())).is_ok() {
        sent += 1;
    }
    sent > 1
}

fn abandon_handshake(c: &Chaos, id: &str) -> bool {
    let Some(path) = c.media_path(id) else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect(c.server_addr) else {
        return false;
    };
    let sent = s
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgr").as_bytes())
        .is_ok();
    std::thread::sleep(Duration::from_millis(100));
    sent
}

fn slow_requests(c: &Chaos, _: &str) -> bool {
    // A slowloris: a byte every 300 ms, until the server gives up on the request (408).
    let Ok(mut s) = TcpStream::connect(c.server_addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
    let mut answer = [0u8; 256];
    for b in b"GET /health HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxx" {
        if s.write_all(&[*b]).is_err() {
            return false;
        }
        if let Ok(n) = s.read(&mut answer) {
            // Counted only when the server did what a slowloris should get: a 408.
            return answer[..n].starts_with(b"HTTP/1.1 408");
        }
        if c.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

fn malformed_requests(c: &Chaos, _: &str) -> bool {
    let bad: [&[u8]; 6] = [
        b"POST /call HTTP/1.1\r\nContent-Length: banana\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello",
        b"POST /api/v1/exotel/status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /media HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"POST /voicebot/connect HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n{",
    ];
    let mut all_refused = true;
    for request in bad {
        let Ok(mut s) = TcpStream::connect(c.server_addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.write_all(request);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        // Each is refused with a 4xx, not left hanging.
        all_refused &= answer.starts_with(b"HTTP/1.1 4");
    }
    all_refused
}

fn rows(server: &Server) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut before = String::new();
    loop {
        let page = server.get(&format!("/calls?limit=500{before}")).json();
        let calls = page["calls"].as_array().cloned().unwrap_or_default();
        all.extend(calls);
        match page["next"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => return all,
        }
    }
}

/// Polls `check` every 200 ms for up to `within`; returns its last answer.
fn settle<T>(within: Duration, mut check: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + within;
    loop {
        let (done, value) = check();
        if done || Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_server_holds_up_under_faults_and_gives_everything_back() {
    let server = Server::start(&[
        ("MAX_CONCURRENT_CALLS", "400"),
        ("MEDIA_TOKEN_TTL_S", "3"),
        ("MEDIA_START_TIMEOUT_MS", "2000"),
        ("HTTP_HEAD_TIMEOUT_MS", "2000"),
    ]);
    let pid = server.pid();
    let started_at = metric_line(&server, "process_start_time_seconds ");
    let ids: Ids = Default::default();
    let chaos = Arc::new(Chaos {
        server_addr: server.addr,
        round: Default::default(),
        ids: ids.clone(),
        stop: Default::default(),
    });
    let good_plan = {
        let mut plan = CallPlan::new(server.addr, speech_like(8000, 3000, 7));
        plan.tail_ms = 800;
        plan
    };
    let all_quiet = |server: &Server| {
        settle(Duration::from_secs(20), || {
            let live = server.get("/health").json()["activeCalls"].as_u64();
            (live == Some(0), live)
        })
    };

    // A first round warms the server up to what a server that has seen this traffic keeps
    // (its call log's page cache, its maps at their high-water mark, the allocator's arenas);
    // the second must then give back everything it takes.
    let warm = chaos_round(&chaos, &good_plan, GOOD_CALLS, CHAOS);
    assert_eq!(
        warm.clean_calls(),
        GOOD_CALLS,
        "{}",
        summary(&warm.calls, warm.wall)
    );
    assert_eq!(all_quiet(&server), Some(0));
    let (rss_before, fds_before) = server.rss_kib_and_fds();
    let report = chaos_round(&chaos, &good_plan, GOOD_CALLS, CHAOS);

    // 1. The server never restarted.
    let mut server = server;
    assert!(server.is_running(), "the server died");
    assert_eq!(server.pid(), pid);
    assert_eq!(
        metric_line(&server, "process_start_time_seconds "),
        started_at
    );
    // 2. Every well-behaved call completed with nothing lost.
    assert_eq!(
        report.clean_calls(),
        GOOD_CALLS,
        "{}",
        summary(&report.calls, report.wall)
    );
    // 3. Every call ends, every slot comes back.
    assert_eq!(all_quiet(&server), Some(0), "calls still holding slots");
    // 4. File descriptors all released, memory back within 10%.
    let (rss_after, fds_after) = settle(Duration::from_secs(20), || {
        let (rss, fds) = server.rss_kib_and_fds();
        (fds <= fds_before && rss * 10 <= rss_before * 11, (rss, fds))
    });
    println!("RSS {rss_before} KiB -> {rss_after} KiB, fds {fds_before} -> {fds_after}");
    assert!(
        fds_after <= fds_before,
        "fds: {fds_before} before, {fds_after} after"
    );
    assert!(
        rss_after * 10 <= rss_before * 11,
        "RSS: {rss_before} KiB before, {rss_after} KiB after"
    );
    // 5. One row per call, each final.
    let all_rows = rows(&server);
    let mut expected: BTreeSet<String> = ids.lock().unwrap().clone();
    expected.extend(warm.calls.iter().map(|c| c.call_log_id.clone()));
    expected.extend(report.calls.iter().map(|c| c.call_log_id.clone()));
    let seen: Vec<&str> = all_rows
        .iter()
        .map(|r| r["callLogId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a callLogId with two rows");
    for id in &expected {
        assert!(unique.contains(id.as_str()), "no row for {id}");
    }
    let open: Vec<String> = settle(Duration::from_secs(10), || {
        let open: Vec<String> = rows(&server)
            .iter()
            .filter(|r| {
                ["queued", "initiated", "connected", "in-progress"]
                    .contains(&r["status"].as_str().unwrap_or(""))
            })
            .map(|r| format!("{} {}", r["callLogId"], r["status"]))
            .collect();
        (open.is_empty(), open)
    });
    assert!(open.is_empty(), "rows not in a final state: {open:?}");
    for call in &report.calls {
        let row = server.get(&format!("/calls/{}", call.call_log_id)).json();
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["framesIn"].as_u64(), Some(call.chunks_sent), "{row}");
    }
    server.assert_healthy();
}

/// One round: every misbehaving client, and `good` well-behaved calls spread over it.
fn chaos_round(
    chaos: &Arc<Chaos>,
    plan: &CallPlan,
    good: usize,
    length: Duration,
) -> exotel_voicebot::sim::report::LoadReport {
    chaos.stop.store(false, Ordering::Relaxed);
    chaos.round.fetch_add(1, Ordering::Relaxed);
    let calls = {
        let plan = plan.clone();
        std::thread::spawn(move || run_load(&plan, good, length - Duration::from_secs(4)))
    };
    let mut running: Vec<_> = actors()
        .into_iter()
        .map(|(kind, act)| (kind, chaos.keep_doing(kind, act)))
        .collect();
    for _ in 0..15 {
        running.push(("slow_requests", chaos.keep_doing("slow", slow_requests)));
    }
    std::thread::sleep(length);
    chaos.stop.store(true, Ordering::Relaxed);
    let report = calls.join().unwrap();
    let mut done = std::collections::BTreeMap::new();
    for (kind, handle) in running {
        *done.entry(kind).or_insert(0) += handle.join().unwrap();
    }
    println!("misbehaving clients over {length:?}, by kind: {done:?}");
    for (kind, n) in &done {
        assert!(*n > 0, "no {kind} client got to misbehave: {done:?}");
    }
    report
}

/// A misbehaving client: what it does with one fresh callLogId; whether it got to do it.
type Actor = fn(&Chaos, &str) -> bool;

fn actors() -> Vec<(&'static str, Actor)> {
    vec![
        ("drop_mid_frame", drop_mid_frame),
        ("half_close", half_close),
        ("garbage_frames", garbage_frames),
        ("oversized_frame", oversized_frame),
        ("bad_json", bad_json),
        ("stop_reading", stop_reading),
        ("flood", flood),
        ("abandon_handshake", abandon_handshake),
        ("malformed_requests", malformed_requests),
    ]
}

fn metric_line(server: &Server, prefix: &str) -> String {
    let text = String::from_utf8(server.get("/metrics").body).unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in /metrics"))
        .to_owned()
}
