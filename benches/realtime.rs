//! What a realtime call costs at the edge, in one run on this machine (docs/PERFORMANCE.md):
//!
//! 1. Latency: from a speech-to-speech service's first audio delta of a response to the first
//!    frame of it at the simulated Exotel, over `PROBES` calls one after another, first on an
//!    idle server, then beside `LOAD` realtime calls. Both ends are in this process, so one
//!    clock times them; the server is the release binary, a process of its own.
//! 2. CPU and memory per call: `LOAD` realtime calls on one server and `LOAD` echo calls on
//!    another, the same caller audio and length: CPU seconds per call-second and peak RSS
//!    growth per call, read from /proc, and realtime's ratio to echo.
//!
//! The service is `sim::realtime_service::FakeRealtime` (loopback). Usage:
//! `cargo bench --bench realtime` (`LOAD=100 PROBES=30 CALL_SECONDS=30`). Not run by CI: its
//! figures are the machine's.

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use exotel_voicebot::sim::realtime_service::{FakeRealtime, Script, Then};
use exotel_voicebot::sim::{run_call, run_load, CallPlan, CallReport, Connect, Event};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::{percentile, var, Server};

/// The server with `env`, with room for the load.
fn start(name: &str, env: &[(&str, String)]) -> Server {
    let mut all = vec![
        ("LOG_LEVEL", "warn".to_owned()),
        ("MAX_CONCURRENT_CALLS", "1000".to_owned()),
    ];
    all.extend_from_slice(env);
    Server::start("realtime", name, &all)
}

/// One probe call's latency, in ms: the service's first delta to the caller's first frame.
fn probe(server: &Server, fake: &Arc<FakeExotel>, service: &FakeRealtime) -> Option<f64> {
    let before = service.first_deltas().len();
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 1000, 3));
    plan.check_echo = false;
    plan.connect = Connect::Outbound {
        call: serde_json::json!({"to": "+919800000001", "agent": "probe"}),
        fake: fake.clone(),
    };
    let report = run_call(&plan);
    let sent = *service.first_deltas().get(before)?;
    let heard = first_frame_at(&report)?;
    Some(heard.checked_duration_since(sent)?.as_secs_f64() * 1e3)
}

fn first_frame_at(report: &CallReport) -> Option<Instant> {
    let after = report
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::ReceivedMedia { .. }))?
        .0;
    Some(report.started_at? + after)
}

fn probes(server: &Server, fake: &Arc<FakeExotel>, service: &FakeRealtime, n: usize) -> String {
    let mut ms: Vec<f64> = (0..n)
        .filter_map(|_| probe(server, fake, service))
        .collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return "no probe heard the service".into();
    }
    format!(
        "{} probes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    )
}

/// `calls` calls of `seconds` through the webhook; answers (CPU s per call-second, peak RSS
/// growth KiB per call, clean calls).
fn load(server: &Server, calls: usize, seconds: usize, echo: bool) -> (f64, f64, usize) {
    let mut plan = CallPlan::new(server.addr, speech_like(8000, seconds as u32 * 1000, 3));
    plan.check_echo = echo;
    let (rss_before, _) = server.rss_kib();
    let cpu_before = server.cpu_s();
    let report = run_load(&plan, calls, Duration::from_secs(5));
    let cpu = server.cpu_s() - cpu_before;
    let (_, peak) = server.rss_kib();
    let clean = report.calls.iter().filter(|c| c.is_clean()).count();
    let call_seconds = (calls * seconds) as f64;
    (
        cpu / call_seconds,
        peak.saturating_sub(rss_before) as f64 / calls as f64,
        clean,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let calls = var("LOAD", 100);
    let n_probes = var("PROBES", 30);
    let seconds = var("CALL_SECONDS", 30);
    // Load calls: the model greets for as long as the call lasts, then hears the caller.
    let load_service = FakeRealtime::start(Script {
        greeting_ms: seconds as u32 * 1000 - 2000,
        after_caller_ms: u32::MAX,
        then: Then::EndCall,
    });
    let probe_service = FakeRealtime::start(Script {
        greeting_ms: 500,
        after_caller_ms: u32::MAX,
        then: Then::EndCall,
    });
    let fake = Arc::new(FakeExotel::start(Behaviour::Accept {
        sid: "CA-bench".into(),
    }));
    let realtime = start(
        "realtime",
        &[
            ("BOT", "realtime".into()),
            ("OPENAI_API_KEY", "sk-bench-key".into()),
            ("REALTIME_URL", load_service.url()),
            ("REALTIME_GREETING", "Hello.".into()),
            ("EXOTEL_API_KEY", "k".into()),
            ("EXOTEL_API_TOKEN", "t".into()),
            ("EXOTEL_SID", "bench".into()),
            ("EXOTEL_CALLER_ID", "08047112233".into()),
            ("EXOTEL_API_BASE_URL", fake.base_url()),
        ],
    );
    let echo = start("echo", &[]);
    let agent = serde_json::json!({
        "name": "probe", "bot": "realtime", "url": probe_service.url(), "greeting": "Hi.",
    });
    let created = minreq::post(format!("http://{}/agents", realtime.addr))
        .with_header("Content-Type", "application/json")
        .with_body(agent.to_string())
        .send()
        .expect("POST /agents");
    assert_eq!(
        created.status_code,
        201,
        "{}",
        created.as_str().unwrap_or("")
    );

    println!("realtime edge latency (service's first delta -> first frame at Exotel)");
    println!(
        "  idle server: {}",
        probes(&realtime, &fake, &probe_service, n_probes)
    );
    let beside = std::thread::scope(|s| {
        let loaded = s.spawn(|| load(&realtime, calls, seconds, false));
        // The probes start once the load's calls have ramped up (5 s).
        std::thread::sleep(Duration::from_secs(6));
        let latency = probes(&realtime, &fake, &probe_service, n_probes);
        (latency, loaded.join().expect("the load"))
    });
    println!("  beside {calls} realtime calls: {}", beside.0);
    let (rt_cpu, rt_kib, rt_clean) = beside.1;
    let (echo_cpu, echo_kib, echo_clean) = load(&echo, calls, seconds, true);
    println!("per call, {calls} calls of {seconds} s at 8 kHz (clean: realtime {rt_clean}, echo {echo_clean})");
    println!(
        "  CPU per call-second: realtime {:.2} ms, echo {:.2} ms, ratio {:.2}",
        rt_cpu * 1e3,
        echo_cpu * 1e3,
        rt_cpu / echo_cpu
    );
    println!(
        "  peak memory per call: realtime {rt_kib:.0} KiB, echo {echo_kib:.0} KiB, ratio {:.2}",
        rt_kib / echo_kib.max(1.0)
    );
}
