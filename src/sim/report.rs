//! Many simulated calls at once (`--calls N --ramp S`), and the printed reports.

use super::caller::{finish_report, new_report, run_call, CallPlan, CallReport, EndedBy};
use super::streams::{open_looped_call, Done, Streams};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stack of each simulated call's coroutine in a TLS load, which runs the whole call, in words
/// (256 KiB; only what is touched is resident). A plain call's coroutine only opens the stream,
/// on a connection's stack (`http::CONNECTION_STACK_WORDS`).
const CALL_STACK_WORDS: usize = 256 * 1024 / std::mem::size_of::<usize>();

/// What a load run saw.
#[derive(Debug)]
pub struct LoadReport {
    pub calls: Vec<CallReport>,
    pub wall: Duration,
}

impl LoadReport {
    pub fn clean_calls(&self) -> usize {
        self.calls.iter().filter(|c| c.is_clean()).count()
    }
}

/// The `p`-th percentile (0–100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank).copied()
}

/// Runs `calls` copies of `plan`, started evenly over `ramp` (each at its own phase of the
/// chunk period: `start_delay`).
///
/// Each call opens its stream on a coroutine (the webhook is asked with may's sockets, so a
/// waiting call costs no thread), then streams on one event loop ([`super::streams`]); the
/// coroutine ends once the stream is handed over, so a load's coroutines are its calls being
/// set up, not all its calls (the binary pools their stacks). A TLS load streams each call on
/// its coroutine. With a thread per call, thousands of threads waking 15 times a second cost
/// the load generator more CPU than the server it measured; with a coroutine per call waiting
/// on read timeouts, the load generator still ran out of CPU before the server did.
pub fn run_load(plan: &CallPlan, calls: usize, ramp: Duration) -> LoadReport {
    let started = Instant::now();
    let plan = plan.clone().encoded();
    let streams = match plan.tls {
        None => Streams::start().map(Arc::new).ok(),
        Some(_) => None,
    };
    let calls = match streams {
        Some(streams) => looped_load(&plan, calls, ramp, started, streams),
        None => coroutine_load(&plan, calls, ramp),
    };
    LoadReport {
        calls,
        wall: started.elapsed(),
    }
}

/// Call `i` of a load: its own ids; the first keeps the bot's audio.
fn call_plan(plan: &CallPlan, i: usize) -> CallPlan {
    let mut plan = plan.clone();
    plan.keep_bot_audio &= i == 0;
    let n = crate::calls::CallLogId::generate();
    plan.call_sid = format!("CA{n}");
    plan.stream_sid = format!("MZ{n}");
    plan
}

/// When call `i` of `calls` starts, from the load's start: evenly over the ramp, each moved
/// later by less than a caller chunk (`period`) so that the calls' chunks fall at phases spread
/// over the chunk's period, as real calls' do. Evenly alone, 250 calls over 5 s start 20 ms
/// apart and send their chunks in five bursts per 100 ms, in step with each other: a server
/// that batches wake-ups saw every burst wait a whole rest, a load no real traffic makes. The
/// fractions are the golden ratio's multiples (a low-discrepancy sequence), so the load is the
/// same every run.
fn start_delay(i: usize, calls: usize, ramp: Duration, period: Duration) -> Duration {
    if calls <= 1 {
        return Duration::ZERO;
    }
    const GOLDEN: f64 = 0.618_033_988_749_895;
    let even = ramp * i as u32 / calls as u32;
    let period_us = period.as_micros().max(1);
    let phase = (period_us as f64 * (i as f64 * GOLDEN).fract()) as u128;
    // Later by less than a period, to land on the call's phase.
    let shift = (phase + period_us - even.as_micros() % period_us) % period_us;
    even + Duration::from_micros(shift as u64)
}

/// Each call opened on a coroutine of its own at its start time and streamed on the loop; the
/// reports come back on one channel, each with its place in the load.
fn looped_load(
    plan: &CallPlan,
    calls: usize,
    ramp: Duration,
    started: Instant,
    streams: Arc<Streams>,
) -> Vec<CallReport> {
    let period = Duration::from_millis(plan.chunk_ms as u64);
    let (to, finished) = may::sync::mpsc::channel();
    for i in 0..calls {
        may::coroutine::sleep(
            (started + start_delay(i, calls, ramp, period))
                .saturating_duration_since(Instant::now()),
        );
        let call = call_plan(plan, i);
        let (streams, done) = (
            streams.clone(),
            Done {
                call: i,
                to: to.clone(),
            },
        );
        let builder =
            may::coroutine::Builder::new().stack_size(crate::http::CONNECTION_STACK_WORDS);
        if let Err(e) = may::go!(builder, move || open_looped_call(&call, &streams, done)) {
            let done = Done {
                call: i,
                to: to.clone(),
            };
            done.send(
                new_report(plan),
                Err(format!("no coroutine for the call: {e}")),
            );
        }
    }
    drop(to);
    let mut reports: Vec<Option<CallReport>> = (0..calls).map(|_| None).collect();
    while let Ok((i, (mut report, result))) = finished.recv() {
        if let Err(e) = result {
            report.ended_by = EndedBy::Error(e);
        }
        reports[i] = Some(finish_report(plan, report));
    }
    reports
        .into_iter()
        .map(|r| r.unwrap_or_else(|| failed("the streams' loop dropped the call")))
        .collect()
}

/// Each call on a coroutine of its own for its whole length (a TLS load).
fn coroutine_load(plan: &CallPlan, calls: usize, ramp: Duration) -> Vec<CallReport> {
    let period = Duration::from_millis(plan.chunk_ms as u64);
    let handles: Vec<_> = (0..calls)
        .map(|i| {
            let call = call_plan(plan, i);
            let delay = start_delay(i, calls, ramp, period);
            let builder = may::coroutine::Builder::new().stack_size(CALL_STACK_WORDS);
            may::go!(builder, move || {
                may::coroutine::sleep(delay);
                run_call(&call)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| failed("the call's coroutine panicked")),
            Err(e) => failed(&format!("no coroutine for the call: {e}")),
        })
        .collect()
}

fn failed(why: &str) -> CallReport {
    CallReport {
        ended_by: EndedBy::Error(why.into()),
        ..Default::default()
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |u| format!("{:.2} ms", u as f64 / 1000.0))
}

/// A human-readable report of calls (one or many).
/// Who answered `call`, as the server's call log says (`GET /calls/{callLogId}`, with `token`
/// as `API_TOKEN` when given), or why that is not known: a phone's or a request's agent
/// decides, not only `BOT`.
pub fn answered_by(plan: &CallPlan, call: &CallReport, token: Option<&str>) -> String {
    if call.call_log_id.is_empty() {
        return "not known (the call has no callLogId)".into();
    }
    let mut target = "/calls/".to_owned();
    crate::http::form::encode_into(&mut target, &call.call_log_id);
    match plan.target().fetch_with_token("GET", &target, None, token) {
        Ok((200, body)) => {
            let row: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match row["bot"].as_str() {
                Some(bot) => bot.to_owned(),
                None => "not known (the call's row names no bot yet)".into(),
            }
        }
        Ok((401, _)) => format!(
            "not known (GET {target} answered 401: set API_TOKEN to the server's to see it)"
        ),
        Ok((status, _)) => format!("not known (GET {target} answered {status})"),
        Err(e) => format!("not known ({e})"),
    }
}

pub fn summary(calls: &[CallReport], wall: Duration) -> String {
    let mut out = String::new();
    let clean = calls.iter().filter(|c| c.is_clean()).count();
    let _ = writeln!(
        out,
        "calls: {} run, {} clean, {} with problems, in {:.1} s",
        calls.len(),
        clean,
        calls.len() - clean,
        wall.as_secs_f64()
    );
    let sum = |f: fn(&CallReport) -> u64| calls.iter().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "caller -> server: {} chunks, {} bytes",
        sum(|c| c.chunks_sent),
        sum(|c| c.bytes_sent)
    );
    let mut sizes = std::collections::BTreeMap::<usize, u64>::new();
    for c in calls {
        for (size, n) in &c.chunk_sizes {
            *sizes.entry(*size).or_default() += n;
        }
    }
    let sizes: Vec<String> = sizes.iter().map(|(s, n)| format!("{s} B x{n}")).collect();
    let _ = writeln!(
        out,
        "server -> caller: {} chunks, {} bytes; chunk sizes {}; {} break Exotel's rules",
        sum(|c| c.chunks_received),
        sum(|c| c.bytes_received),
        if sizes.is_empty() {
            "-".into()
        } else {
            sizes.join(", ")
        },
        sum(|c| c.invalid_chunks)
    );
    let _ = writeln!(
        out,
        "marks: {} received, {} echoed; clears: {}; events with another stream_sid: {}",
        calls
            .iter()
            .map(|c| c.marks_received.len() as u64)
            .sum::<u64>(),
        sum(|c| c.marks_echoed),
        sum(|c| c.clears),
        sum(|c| c.wrong_stream_sid)
    );
    let echoed: usize = calls.iter().map(|c| c.echoed).sum();
    let mismatched: usize = calls.iter().map(|c| c.echo_mismatched).sum();
    let missing: usize = calls.iter().map(|c| c.echo_missing).sum();
    let _ = writeln!(
        out,
        "echo: {echoed} samples back unchanged, {mismatched} changed, {missing} lost"
    );
    let mut first: Vec<f64> = calls.iter().filter_map(|c| c.first_bot_chunk_ms).collect();
    first.sort_by(|a, b| a.total_cmp(b));
    if let Some(median) = first.get(first.len() / 2) {
        let _ = writeln!(
            out,
            "first bot chunk: {median:+.1} ms from the first caller chunk (median; negative: the bot spoke first)"
        );
    }
    timings_and_endings(calls, &mut out);
    out
}

/// The summary's last lines: turnaround percentiles, and how the calls ended.
fn timings_and_endings(calls: &[CallReport], out: &mut String) {
    let mut all: Vec<u64> = calls
        .iter()
        .flat_map(|c| c.turnaround_us.iter().copied())
        .collect();
    all.sort_unstable();
    let _ = writeln!(
        *out,
        "turnaround per chunk ({} chunks): p50 {}, p99 {}, max {}",
        all.len(),
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 99.0)),
        ms(all.last().copied())
    );
    let mut ended = std::collections::BTreeMap::<String, u64>::new();
    for c in calls {
        let key = match &c.ended_by {
            EndedBy::Caller => "stop sent by the caller".to_string(),
            EndedBy::Server(code) => format!("closed by the server ({code})"),
            EndedBy::Error(e) => format!("error: {e}"),
        };
        *ended.entry(key).or_default() += 1;
    }
    for (how, n) in ended {
        let _ = writeln!(*out, "ended: {how} x{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::start_delay;
    use std::time::Duration;

    /// 250 calls over 5 s start 20 ms apart; their chunks (every 100 ms) must not all fall on
    /// the same five phases of the period, and the ramp keeps its length.
    #[test]
    fn a_loads_calls_start_at_phases_spread_over_the_chunk_period() {
        let (calls, ramp, period) = (250, Duration::from_secs(5), Duration::from_millis(100));
        let starts: Vec<Duration> = (0..calls)
            .map(|i| start_delay(i, calls, ramp, period))
            .collect();
        let mut phases: Vec<u128> = starts.iter().map(|d| d.as_micros() % 100_000).collect();
        phases.sort_unstable();
        phases.push(phases[0] + 100_000);
        let widest = phases.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            widest < 2_000,
            "the widest gap between phases is {widest} µs"
        );
        assert!(starts.iter().all(|d| *d < ramp + period));
        assert_eq!(start_delay(0, 1, ramp, period), Duration::ZERO);
    }
}
