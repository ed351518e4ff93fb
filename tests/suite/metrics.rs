//! `GET /metrics` on the real binary: the output parses as Prometheus text, line by line, and
//! its counters match a known sequence of calls.

use crate::support;

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use exotel_voicebot::sim::{run_call, CallPlan};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::Server;

/// Checks the text format (exposition format 0.0.4) and returns every sample by its full name
/// with labels, e.g. `x_total{outcome="placed"}`.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let name_ok = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        assert!(!line.is_empty(), "line {n} is empty");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
            );
            assert!(name_ok(name), "line {n}: bad name {name:?}");
            match kind {
                "HELP" => assert!(!tail.is_empty(), "line {n}: empty help"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail),
                        "line {n}: type {tail:?}"
                    );
                    assert!(
                        typed.insert(name.to_owned(), tail.to_owned()).is_none(),
                        "line {n}: {name} typed twice"
                    );
                }
                _ => panic!("line {n}: unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("line {n}: {line:?}"));
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value
                .parse()
                .unwrap_or_else(|_| panic!("line {n}: value {value:?}"))
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                Some(
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("line {n}: {line:?}")),
                ),
            ),
            None => (series, None),
        };
        assert!(name_ok(name), "line {n}: bad name {name:?}");
        for pair in labels.into_iter().flat_map(|l| l.split(',')) {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("line {n}: label {pair:?}"));
            assert!(
                name_ok(k) && v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                "line {n}: label {pair:?}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            typed.contains_key(family),
            "line {n}: {name} has no TYPE before it"
        );
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "line {n}: {series} twice"
        );
    }
    // Histograms: cumulative buckets ending in +Inf equal to the count.
    for (family, _) in typed.iter().filter(|(_, t)| *t == "histogram") {
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|(k, v)| {
                let le = k
                    .strip_prefix(&format!("{family}_bucket{{le=\""))?
                    .strip_suffix("\"}")?;
                Some((
                    if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    },
                    *v,
                ))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}: buckets not cumulative"
        );
        assert_eq!(
            buckets.last().unwrap().1,
            samples[&format!("{family}_count")],
            "{family}: +Inf != count"
        );
    }
    samples
}

#[test]
fn metrics_parse_and_count_a_known_sequence_of_calls() {
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA-m".into() });
    let base = fake.base_url();
    let server = Server::start(&[
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme"),
        ("EXOTEL_APP_ID", "77"),
        ("EXOTEL_CALLER_ID", "0801"),
        ("EXOTEL_API_BASE_URL", &base),
    ]);
    let fresh = parse_exposition(&String::from_utf8(server.get("/metrics").body).unwrap());
    assert_eq!(fresh["exotel_voicebot_calls_live"], 0.0);
    assert!(fresh["process_start_time_seconds"] > 1.7e9);

    // Two calls placed, one refused, one inbound echo call with a bad frame-free stream.
    for id in ["m1", "m2"] {
        assert_eq!(
            server
                .post_json(
                    "/call",
                    &format!(r#"{{"to": "+919876543210", "callLogId": "{id}"}}"#)
                )
                .status,
            200
        );
    }
    fake.set(Behaviour::Answer {
        status: 403,
        body: r#"{"RestException":{"Message":"no"}}"#.into(),
    });
    assert_eq!(
        server
            .post_json("/call", r#"{"to": "+919876543210", "callLogId": "m3"}"#)
            .status,
        502
    );
    let report = run_call(&CallPlan::new(server.addr, speech_like(8000, 1000, 1)));
    assert!(report.is_clean());

    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = parse_exposition(&String::from_utf8(server.get("/metrics").body).unwrap());
        if m["exotel_voicebot_calls_ended_total{status=\"completed\"}"] == 1.0
            && m["exotel_voicebot_media_frames_total{direction=\"in\"}"] > 0.0
        {
            break m;
        }
        assert!(Instant::now() < deadline, "{m:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        m["exotel_voicebot_exotel_requests_total{outcome=\"placed\"}"],
        2.0
    );
    assert_eq!(
        m["exotel_voicebot_exotel_requests_total{outcome=\"refused\"}"],
        1.0
    );
    assert_eq!(
        m["exotel_voicebot_exotel_requests_total{outcome=\"timeout\"}"],
        0.0
    );
    assert_eq!(m["exotel_voicebot_exotel_request_seconds_count"], 3.0);
    assert_eq!(
        m["exotel_voicebot_calls_ended_total{status=\"failed\"}"],
        1.0
    );
    assert_eq!(m["exotel_voicebot_calls_ended_total{status=\"busy\"}"], 0.0);
    assert_eq!(
        m["exotel_voicebot_calls_live"], 2.0,
        "the two placed calls hold their slots"
    );
    assert_eq!(m["exotel_voicebot_webhook_seconds_count"], 1.0);
    assert_eq!(
        m["exotel_voicebot_media_frames_total{direction=\"in\"}"],
        report.chunks_sent as f64
    );
    assert_eq!(
        m["exotel_voicebot_media_bytes_total{direction=\"in\"}"],
        report.bytes_sent as f64
    );
    assert_eq!(
        m["exotel_voicebot_media_frames_total{direction=\"out\"}"],
        report.chunks_received as f64
    );
    assert_eq!(m["exotel_voicebot_media_bad_frames_total"], 0.0);
    assert!(m["exotel_voicebot_media_chunk_send_delay_seconds_count"] > 0.0);
}
