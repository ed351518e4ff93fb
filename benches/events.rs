//! What a receiver that never answers costs the calls (docs/PERFORMANCE.md): `LOAD` calls on
//! a server whose `EVENTS_URL` accepts connections and never answers, and the same on a server
//! without `EVENTS_URL`, in one run; for each, whether every call was clean and `/health`'s
//! latency (p50, p99) polled throughout. Loopback only. `cargo bench --bench events`
//! (`LOAD=500 CALL_SECONDS=5`). Not run by CI: its figures are the machine's.

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::{run_load, CallPlan};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::{percentile, var, Server};

/// The server with `env`, quiet, with room for any load.
fn start(name: &str, env: &[(&str, String)]) -> Server {
    let mut all = vec![
        ("LOG_LEVEL", "error".to_owned()),
        ("MAX_CONCURRENT_CALLS", "100000".to_owned()),
    ];
    all.extend_from_slice(env);
    Server::start("events", name, &all)
}

/// A receiver that takes connections and never answers: the sockets are kept open.
fn silent_receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    port
}

/// `calls` calls while `/health` is polled every 20 ms: (clean calls, p50 ms, p99 ms, polls).
fn run(server: &Server, calls: usize, seconds: u32) -> (usize, f64, f64, usize) {
    let plan = {
        let mut plan = CallPlan::new(server.addr, speech_like(8000, seconds * 1000, 3));
        plan.check_echo = false;
        plan
    };
    let done = AtomicBool::new(false);
    let url = format!("http://{}/health", server.addr);
    std::thread::scope(|s| {
        let load = s.spawn(|| {
            let report = run_load(&plan, calls, Duration::from_secs(5));
            done.store(true, Ordering::SeqCst);
            report.clean_calls()
        });
        let mut ms = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let started = Instant::now();
            let answer = minreq::get(&url).with_timeout(10).send();
            if answer.is_ok_and(|a| a.status_code == 200) {
                ms.push(started.elapsed().as_secs_f64() * 1e3);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let clean = load.join().expect("the load");
        ms.sort_by(f64::total_cmp);
        (clean, percentile(&ms, 0.5), percentile(&ms, 0.99), ms.len())
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let calls = var("LOAD", 500);
    let seconds = var("CALL_SECONDS", 5) as u32;
    let receiver = silent_receiver();
    let secret = "whsec_ZXZlbnRzLWJlbmNoLWtleS0wMTIzNDU2Nzg5YWJjZGVm".to_owned();
    let silent = start(
        "silent",
        &[
            ("EVENTS_URL", format!("http://127.0.0.1:{receiver}/")),
            ("EVENTS_SECRET", secret),
        ],
    );
    let plain = start("plain", &[]);
    println!("{calls} calls of {seconds} s; /health polled every 20 ms during each run");
    for (name, server) in [
        ("without EVENTS_URL", &plain),
        ("EVENTS_URL never answers", &silent),
    ] {
        let (clean, p50, p99, polls) = run(server, calls, seconds);
        println!(
            "  {name}: {clean}/{calls} calls clean; /health p50 {p50:.2} ms, p99 {p99:.2} ms ({polls} polls)"
        );
    }
}
