//! The operator console's server side, through the real binary: its files (gzip, ETag, 304,
//! the security headers), the browser's sign-in and what a cookie may do, the Host check, the
//! live view from memory, the call log's filters and CSV, a finished call's recording, the
//! campaign preview, and a call from a browser to an agent. `dev/console-test` drives the page
//! itself in Chromium.

use crate::support::{self, request, Server, TestResponse};
use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use exotel_voicebot::sim::{run_call, CallPlan, Connect};
use std::time::{Duration, Instant};

const TOKEN: &str = "console-token-1234";
const BEARER: (&str, &str) = ("Authorization", "Bearer console-token-1234");

fn get_with(server: &Server, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    request(server.addr, "GET", path, headers, b"")
}

fn raw(server: &Server, head: &str, body: &[u8]) -> TestResponse {
    let mut conn = support::Conn::open(server.addr);
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    conn.send(&bytes);
    conn.read_response()
}

/// Signs in; the session cookie (`name=value`) and the CSRF token.
/// `POST /ui/session` with `token`.
fn try_token(server: &Server, token: &str) -> TestResponse {
    request(
        server.addr,
        "POST",
        "/ui/session",
        &[("Content-Type", "application/json")],
        format!(r#"{{"token": "{token}"}}"#).as_bytes(),
    )
}

fn sign_in(server: &Server) -> (String, String) {
    let r = try_token(server, TOKEN);
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.header("set-cookie").unwrap().to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, r.json()["csrf"].as_str().unwrap().to_owned())
}

#[test]
fn the_console_files_come_gzipped_with_an_etag_a_304_and_a_strict_policy() {
    let server = Server::start(&[("API_TOKEN", TOKEN)]);
    let page = server.get("/ui/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains(r#"src="app.js""#));
    let csp = page.header("content-security-policy").unwrap();
    for part in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.header("referrer-policy").is_some());
    let app_js = |header: (&str, &str)| request(server.addr, "GET", "/ui/app.js", &[header], b"");
    let gz = app_js(("Accept-Encoding", "br, gzip;q=0.9"));
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "gzip's magic");
    let plain = server.get("/ui/app.js");
    assert!(plain.header("content-encoding").is_none());
    assert!(plain.body.len() > gz.body.len());
    let etag = plain.header("etag").unwrap();
    assert_eq!(gz.header("etag"), Some(etag));
    let again = app_js(("If-None-Match", etag));
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty() && again.header("content-length").is_none());
    let other = app_js(("If-None-Match", "\"stale\""));
    assert_eq!(other.status, 200);
    server.get("/ui/nothing.js").assert_error(404, "not_found");
    let moved = server.get("/ui");
    assert_eq!(
        (moved.status, moved.header("location")),
        (308, Some("/ui/"))
    );
}

#[test]
fn a_browser_signs_in_with_the_api_token_and_its_cookie_is_httponly_strict_and_lasts_ui_session_hours(
) {
    let server = Server::start(&[("API_TOKEN", TOKEN), ("UI_SESSION_HOURS", "2")]);
    let before = server.get("/ui/session").json();
    assert_eq!(
        (&before["signedIn"], &before["tokenRequired"]),
        (&false.into(), &true.into())
    );
    let wrong = try_token(&server, "nope");
    wrong.assert_error(401, "unauthorized");
    assert!(wrong.header("set-cookie").is_none());
    let r = try_token(&server, TOKEN);
    let cookie = r.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=7200"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN));
    let (pair, csrf) = sign_in(&server);
    let state = request(server.addr, "GET", "/ui/session", &[("Cookie", &pair)], b"").json();
    assert_eq!(state["signedIn"], true);
    assert_eq!(state["csrf"], csrf.as_str());
    let out = request(
        server.addr,
        "DELETE",
        "/ui/session",
        &[("Cookie", &pair)],
        b"",
    );
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    request(server.addr, "GET", "/calls", &[("Cookie", &pair)], b"")
        .assert_error(401, "unauthorized");
}

#[test]
fn a_cookie_session_reads_freely_but_changes_only_with_its_csrf_token_and_its_own_origin() {
    let server = Server::start(&[("API_TOKEN", TOKEN)]);
    let (cookie, csrf) = sign_in(&server);
    let read = request(server.addr, "GET", "/calls", &[("Cookie", &cookie)], b"");
    assert_eq!(read.status, 200, "{read:?}");
    request(server.addr, "GET", "/calls", &[], b"").assert_error(401, "unauthorized");
    let add = |headers: &[(&str, &str)]| {
        let mut all = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/json"),
        ];
        all.extend_from_slice(headers);
        request(
            server.addr,
            "POST",
            "/dnc",
            &all,
            br#"{"numbers": ["+919800000042"]}"#,
        )
    };
    add(&[("Origin", "http://127.0.0.1")]).assert_error(403, "csrf");
    add(&[("X-CSRF-Token", &csrf)]).assert_error(403, "csrf");
    add(&[
        ("X-CSRF-Token", "0".repeat(64).as_str()),
        ("Origin", "http://127.0.0.1"),
    ])
    .assert_error(403, "csrf");
    add(&[("X-CSRF-Token", &csrf), ("Origin", "http://evil.example")])
        .assert_error(403, "cross_site");
    add(&[
        ("X-CSRF-Token", &csrf),
        ("Origin", "http://127.0.0.1"),
        ("Sec-Fetch-Site", "cross-site"),
    ])
    .assert_error(403, "cross_site");
    let listed = get_with(&server, "/dnc", &[BEARER]).json();
    assert_eq!(listed["count"], 0, "nothing got through: {listed}");
    let ok = add(&[("X-CSRF-Token", &csrf), ("Origin", "http://127.0.0.1")]);
    assert_eq!(ok.status, 200, "{ok:?}");
    // A bearer client is unaffected: no cookie, no CSRF token, no Origin.
    let curl = request(
        server.addr,
        "POST",
        "/dnc",
        &[BEARER, ("Content-Type", "application/json")],
        br#"{"numbers": ["+919800000043"]}"#,
    );
    assert_eq!(curl.status, 200, "{curl:?}");
    assert_eq!(get_with(&server, "/dnc", &[BEARER]).json()["count"], 2);
}

#[test]
fn wrong_tokens_are_limited_per_address_even_before_the_right_one() {
    let server = Server::start(&[("API_TOKEN", TOKEN)]);
    for _ in 0..5 {
        try_token(&server, "guess").assert_error(401, "unauthorized");
    }
    let limited = try_token(&server, TOKEN);
    limited.assert_error(429, "too_many_sign_ins");
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[test]
fn a_foreign_host_name_is_refused_and_a_named_one_passes() {
    let open = Server::start(&[]);
    let as_host = |server: &Server, host: &str, path: &str| {
        raw(server, &format!("GET {path} HTTP/1.1\nHost: {host}\n"), b"")
    };
    assert_eq!(as_host(&open, "127.0.0.1:80", "/calls").status, 200);
    assert_eq!(as_host(&open, "localhost", "/calls").status, 200);
    assert_eq!(as_host(&open, "[::1]:3000", "/calls").status, 200);
    // A page of rebind.example whose name now points at 127.0.0.1.
    as_host(&open, "rebind.example:3000", "/calls").assert_error(403, "host_not_allowed");
    as_host(&open, "rebind.example", "/ui/").assert_error(403, "host_not_allowed");
    let named = Server::start(&[
        ("UI_ALLOWED_HOSTS", "console.example.com"),
        ("WEBHOOK_BASE_URL", "https://bot.example.com"),
    ]);
    for host in ["console.example.com", "bot.example.com:443"] {
        assert_eq!(as_host(&named, host, "/ui/").status, 200, "{host}");
    }
    // Behind a proxy that terminates TLS for the public URL, the cookie is Secure; for
    // another name (this machine, over plain HTTP) it is not, or the browser would drop it.
    let named_with_token = Server::start(&[
        ("API_TOKEN", "t-for-secure"),
        ("WEBHOOK_BASE_URL", "https://bot.example.com"),
    ]);
    let signed_in = |host: &str| {
        let body = br#"{"token": "t-for-secure"}"#;
        let head = format!(
            "POST /ui/session HTTP/1.1\nHost: {host}\nContent-Type: application/json\nContent-Length: {}\n",
            body.len()
        );
        raw(&named_with_token, &head, body)
    };
    let public = signed_in("bot.example.com");
    assert!(
        public.header("set-cookie").unwrap().contains("; Secure"),
        "{public:?}"
    );
    let local = signed_in("127.0.0.1:3000");
    assert!(
        !local.header("set-cookie").unwrap().contains("Secure"),
        "{local:?}"
    );
    let state = open.get("/ui/session").json();
    assert_eq!(
        (&state["signedIn"], &state["tokenRequired"]),
        (&true.into(), &false.into()),
        "without API_TOKEN the console follows the API's rule"
    );
}

/// Waits until `check` holds on `path`'s JSON (bearer), up to 10 s.
fn wait_json(
    server: &Server,
    path: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_with(server, path, &[BEARER]).json();
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never matched: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_live_view_shows_a_streaming_call_and_lets_it_go_when_it_ends_and_its_recording_downloads() {
    let dir = support::temp_dir("console-live");
    let server = Server::start_in(
        dir,
        &[
            ("API_TOKEN", TOKEN),
            ("RECORD", "1"),
            ("MAX_CONCURRENT_CALLS", "7"),
        ],
    );
    request(server.addr, "GET", "/live", &[], b"").assert_error(401, "unauthorized");
    let addr = server.addr;
    let call = std::thread::spawn(move || {
        let audio = exotel_voicebot::media::audio::speech_like(8000, 1500, 1);
        run_call(&CallPlan::new(addr, audio))
    });
    let live = wait_json(&server, "/live", |v| {
        v["calls"].as_array().is_some_and(|c| c.len() == 1)
            && v["calls"][0]["status"] == "in-progress"
    });
    let shown = &live["calls"][0];
    assert_eq!(shown["direction"], "inbound");
    assert_eq!(shown["number"], "+919876543210");
    assert_eq!(shown["phone"], "08047112233");
    assert!(shown["answeredAt"].as_i64().unwrap() <= live["now"].as_i64().unwrap());
    assert_eq!(
        (live["live"].as_u64(), live["max"].as_u64()),
        (Some(1), Some(7))
    );
    let id = shown["callLogId"].as_str().unwrap().to_owned();
    let still = get_with(&server, &format!("/calls/{id}/recording"), &[BEARER]);
    still.assert_error(409, "call_live");
    let report = call.join().unwrap();
    assert!(report.is_clean(), "{report:?}");
    wait_json(&server, "/live", |v| {
        v["calls"].as_array().is_some_and(Vec::is_empty)
    });
    wait_json(&server, &format!("/calls/{id}"), |v| {
        !v["endedAt"].is_null()
    });
    let wav = get_with(&server, &format!("/calls/{id}/recording"), &[BEARER]);
    assert_eq!(wav.status, 200, "{wav:?}");
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    assert_eq!(&wav.body[..4], b"RIFF");
    assert!(wav.body.len() > 8000, "{} bytes", wav.body.len());
    get_with(&server, "/calls/nope/recording", &[BEARER]).assert_error(404, "not_found");
}

#[test]
fn calls_filter_by_number_agent_day_and_id_and_export_as_csv() {
    let server = Server::start(&[]);
    for k in 0..3 {
        let sid = format!("CAfilter{k}");
        let r = server.get(&format!(
            "/voicebot/connect?CallSid={sid}&CallFrom=%2B91987654321{k}&CallTo=08047112233"
        ));
        assert_eq!(r.status, 200);
    }
    let count = |q: &str| {
        server.get(&format!("/calls?{q}")).json()["calls"]
            .as_array()
            .unwrap()
            .len()
    };
    wait_json_open(&server, "/calls", 3);
    assert_eq!(count(""), 3);
    assert_eq!(count("number=543211"), 1, "a partial number");
    assert_eq!(count("number=98765"), 3);
    assert_eq!(count("id=CAfilter2"), 1, "a CallSid");
    let one = server.get("/calls?id=CAfilter0").json();
    let id = one["calls"][0]["callLogId"].as_str().unwrap().to_owned();
    assert_eq!(count(&format!("id={id}")), 1, "a callLogId");
    assert_eq!(count("agent=nobody"), 0);
    assert_eq!(count("since=2000-01-01&until=2100-01-01"), 3);
    assert_eq!(count("until=2000-01-01"), 0);
    assert_eq!(count("direction=web"), 0);
    server
        .get("/calls?since=May")
        .assert_error(400, "bad_request");
    let csv = server.get("/calls.csv?number=543211");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(csv.header("x-truncated"), Some("false"));
    let text = String::from_utf8(csv.body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("callLogId,direction,status,from,to"));
    assert!(
        lines[1].contains("+919876543211") && lines[1].contains("CAfilter1"),
        "{text}"
    );
}

fn wait_json_open(server: &Server, path: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get(path).json()["calls"].as_array().unwrap().len() < n {
        assert!(Instant::now() < deadline, "{path} never had {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_web_call_to_an_agent_is_a_call_like_any_other_with_direction_web() {
    let server = Server::start(&[("API_TOKEN", TOKEN)]);
    let created = request(
        server.addr,
        "POST",
        "/agents",
        &[BEARER, ("Content-Type", "application/json")],
        br#"{"name": "tryme", "bot": "echo"}"#,
    );
    assert_eq!(created.status, 201, "{created:?}");
    request(
        server.addr,
        "POST",
        "/agents/nobody/web-call",
        &[BEARER],
        b"",
    )
    .assert_error(404, "not_found");
    let placed = request(
        server.addr,
        "POST",
        "/agents/tryme/web-call",
        &[BEARER],
        b"",
    );
    assert_eq!(placed.status, 201, "{placed:?}");
    let placed = placed.json();
    let media = placed["media"].as_str().unwrap();
    assert!(media.starts_with("/media?"), "{placed}");
    let mut plan = CallPlan::new(
        server.addr,
        exotel_voicebot::media::audio::speech_like(8000, 1500, 3),
    );
    plan.connect = Connect::Url(format!("ws://{}{media}", server.addr));
    plan.call_sid = placed["callSid"].as_str().unwrap().to_owned();
    let report = run_call(&plan);
    assert!(report.is_clean(), "{report:?}");
    assert!(report.echoed > 0, "the echo agent answered: {report:?}");
    let id = placed["callLogId"].as_str().unwrap();
    let row = wait_json(&server, &format!("/calls/{id}"), |v| {
        v["status"] == "completed"
    });
    assert_eq!(row["direction"], "web");
    assert_eq!(row["agent"], "tryme");
    assert!(
        row["framesIn"].as_u64().unwrap() > 0 && row["framesOut"].as_u64().unwrap() > 0,
        "{row}"
    );
    let webs = get_with(&server, "/calls?direction=web", &[BEARER]).json();
    assert_eq!(webs["calls"].as_array().unwrap().len(), 1);
}

#[test]
fn a_campaign_upload_is_previewed_with_dry_run_and_nothing_is_made() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-console".into(),
    });
    let env = support::exotel_line_env(&fake.base_url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&env);
    let csv = b"to,name\n+919876543210,Asha\nnot-a-number,Bo\n+919876543211,Chen\n";
    let upload = |dry_run: &str, file: &[u8]| {
        request(
            server.addr,
            "POST",
            &format!("/campaigns?name=trial&dryRun={dry_run}"),
            &[("Content-Type", "text/csv")],
            file,
        )
    };
    let preview = upload("1", csv);
    assert_eq!(preview.status, 200, "{preview:?}");
    let preview = preview.json();
    assert_eq!(preview["dryRun"], true);
    assert_eq!(preview["total"], 2);
    assert_eq!(preview["first"][0]["to"], "+919876543210");
    assert_eq!(preview["first"][0]["params"]["name"], "Asha");
    assert_eq!(preview["rejected"][0]["row"], 2);
    assert!(preview["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .starts_with("to:"));
    assert_eq!(
        server.get("/campaigns").json()["campaigns"],
        serde_json::json!([])
    );
    upload("1", b"to\nnope\n").assert_error(400, "bad_request");
    let made = upload("0", csv);
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(
        server.get("/campaigns").json()["campaigns"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
