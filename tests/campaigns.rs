//! Campaigns on the real binary against a fake Exotel that plays a telephone network (its own
//! CallSid per call, ringing, talking, busy numbers, status callbacks). The fake's record of
//! what it was asked is the judge: how many calls were live at once, how fast they came, who
//! was called how many times. The campaign clock (`CAMPAIGN_CLOCK_START`) puts the server a few
//! seconds before its window opens; waits between attempts are seconds.

mod support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel, Network, NetworkCall};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{request, Server};

const CONTACTS: usize = 300;
/// Every 15th contact is always busy; every 60th, from the 7th, is on the do-not-call list.
fn is_busy(n: usize) -> bool {
    n % 15 == 0
}
fn is_dnc(n: usize) -> bool {
    n % 60 == 7
}
fn number(n: usize) -> String {
    format!("+9198{n:08}")
}

/// `answer_delay`: how long Exotel takes to answer `Calls/connect` (the call is placed at once).
fn network(answer_delay: Duration) -> FakeExotel {
    FakeExotel::start(Behaviour::Network(Network {
        ring: Duration::from_millis(300),
        talk: Duration::from_secs(2),
        busy: (1..=CONTACTS).filter(|n| is_busy(*n)).map(number).collect(),
        answer_delay,
    }))
}

fn start(dir: std::path::PathBuf, fake: &FakeExotel, clock: &str) -> Server {
    start_with(dir, fake, clock, &[])
}

/// As [`start`], with `more` variables.
fn start_with(
    dir: std::path::PathBuf,
    fake: &FakeExotel,
    clock: &str,
    more: &[(&str, &str)],
) -> Server {
    let base = fake.base_url();
    let mut env = vec![
        ("EXOTEL_API_KEY", "campaign-key"),
        ("EXOTEL_API_TOKEN", "campaign-token-0123456789"),
        ("EXOTEL_SID", "acme"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", &base),
        ("MAX_CONCURRENT_CALLS", "100"),
        ("CAMPAIGN_CLOCK_START", clock),
    ];
    env.extend_from_slice(more);
    Server::start_in(dir, &env)
}

/// The 300 contacts with a parameter each, two bad rows among them.
fn campaign_body() -> String {
    let mut contacts: Vec<serde_json::Value> = (1..=CONTACTS)
        .map(|n| serde_json::json!({"to": number(n), "params": {"row": n}}))
        .collect();
    contacts.insert(10, serde_json::json!({"to": "12345"}));
    contacts.insert(20, serde_json::json!({"to": number(3)}));
    serde_json::json!({
        "name": "reminders-nov",
        "contacts": contacts,
        "maxConcurrent": 20,
        "callsPerMinute": 600,
        "retry": {"on": ["busy"], "attempts": 3, "waitSeconds": 2},
    })
    .to_string()
}

fn list_dnc(server: &Server) {
    let numbers: Vec<String> = (1..=CONTACTS).filter(|n| is_dnc(*n)).map(number).collect();
    let r = server.post_json(
        "/dnc",
        &serde_json::json!({ "numbers": numbers }).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.json());
}

fn create(server: &Server) -> String {
    let created = server.post_json("/campaigns", &campaign_body());
    assert_eq!(created.status, 201, "{}", created.json());
    let created = created.json();
    assert_eq!(created["total"], CONTACTS, "{created}");
    let rejected = created["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{created}");
    assert_eq!(rejected[0]["row"], 11, "{created}");
    assert!(
        rejected[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("duplicate of row 3"),
        "{created}"
    );
    created["id"].as_str().unwrap().to_owned()
}

/// Polls the campaign until it is completed (or `within` passes), answering its last view.
/// When it is not, the failure shows every contact still open with its call's row and the
/// dialer's log lines about it, so that a stall says where it is.
fn wait_completed(server: &Server, id: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let shown = server.get(&format!("/campaigns/{id}")).json();
        if shown["status"] == "completed" {
            return shown;
        }
        if Instant::now() >= deadline {
            panic!(
                "not completed in time: {shown}\n{}",
                open_contacts(server, id)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The campaign's contacts that are not done, each with its call's row and log lines.
fn open_contacts(server: &Server, id: &str) -> String {
    let page = server
        .get(&format!("/campaigns/{id}/calls?limit=1000"))
        .json();
    let log = server.log();
    let mut out = String::new();
    for contact in page["calls"].as_array().into_iter().flatten() {
        if contact["state"] == "done" {
            continue;
        }
        out.push_str(&format!("open contact: {contact}\n"));
        if let Some(call) = contact["callLogId"].as_str() {
            let row = server.get(&format!("/calls/{call}"));
            out.push_str(&format!(
                "  its row: {}\n",
                String::from_utf8_lossy(&row.body)
            ));
            for line in log.iter().filter(|l| l.contains(call)) {
                out.push_str(&format!("  log: {line}\n"));
            }
        }
    }
    out
}

/// Calls per number, by the fake's record.
fn calls_per_number(calls: &[NetworkCall]) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for c in calls {
        *per.entry(c.to.clone()).or_default() += 1;
    }
    per
}

/// The most calls asked for within any `span`.
fn most_within(calls: &[NetworkCall], span: Duration) -> usize {
    let mut at: Vec<Instant> = calls.iter().map(|c| c.asked_at).collect();
    at.sort();
    let mut most = 0;
    let mut first = 0;
    for last in 0..at.len() {
        while at[last].duration_since(at[first]) >= span {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

#[test]
fn a_campaign_calls_everyone_within_its_limits_its_window_and_its_retries() {
    let fake = network(Duration::ZERO);
    // Three seconds before the window (09:00 in India) opens.
    let server = start(
        support::temp_dir("campaign"),
        &fake,
        "2026-11-26T08:59:57+05:30",
    );
    let started = Instant::now();
    list_dnc(&server);
    let id = create(&server);
    let early = server.get(&format!("/campaigns/{id}")).json();
    assert_eq!(early["status"], "waiting-window", "{early}");
    assert_eq!(early["pending"], CONTACTS, "{early}");

    let done = wait_completed(&server, &id, Duration::from_secs(150));
    let calls = fake.network_calls();

    // Never outside the window: nothing before it opened, three seconds after the start.
    let first = calls.iter().map(|c| c.asked_at).min().unwrap();
    assert!(
        first.duration_since(started) >= Duration::from_millis(2_800),
        "the first call came {:?} after the start, before the window opened",
        first.duration_since(started)
    );
    // At most 20 live at once, and at most 10 a second (600 a minute) at every moment.
    assert!(fake.max_live() <= 20, "{} live at once", fake.max_live());
    assert!(
        fake.max_live() >= 15,
        "the limit never bound: {}",
        fake.max_live()
    );
    let per_second = most_within(&calls, Duration::from_secs(1));
    assert!(per_second <= 11, "{per_second} calls within one second");
    assert!(most_within(&calls, Duration::from_secs(60)) <= 600);

    // Everyone called; busy numbers three times in all, at least the wait apart; the rest
    // once; listed numbers never.
    let per = calls_per_number(&calls);
    let mut busy = 0;
    for n in 1..=CONTACTS {
        let count = per.get(&number(n)).copied().unwrap_or(0);
        let expected = match (is_dnc(n), is_busy(n)) {
            (true, _) => 0,
            (false, true) => 3,
            (false, false) => 1,
        };
        assert_eq!(count, expected, "contact {n} was called {count} times");
        if expected == 3 {
            busy += 1;
            let mut at: Vec<Instant> = calls
                .iter()
                .filter(|c| c.to == number(n))
                .map(|c| c.asked_at)
                .collect();
            at.sort();
            for pair in at.windows(2) {
                assert!(pair[1].duration_since(pair[0]) >= Duration::from_secs(2));
            }
        }
    }
    let dnc = (1..=CONTACTS).filter(|n| is_dnc(*n)).count();
    // Every call from the environment's account, with its credentials.
    assert!(calls.iter().all(|c| c.caller_id == "08047112233"));

    // The campaign's own counts say the same.
    assert_eq!(done["total"], CONTACTS);
    assert_eq!(done["pending"], 0, "{done}");
    assert_eq!(done["outcomes"]["busy"], busy, "{done}");
    assert_eq!(done["outcomes"]["skipped-dnc"], dnc, "{done}");
    assert_eq!(
        done["outcomes"]["completed"],
        CONTACTS - busy - dnc,
        "{done}"
    );
    assert_eq!(done["attempts"]["1"], CONTACTS - dnc, "{done}");
    assert_eq!(done["attempts"]["2"], busy, "{done}");
    assert_eq!(done["attempts"]["3"], busy, "{done}");
    assert_eq!(done["dialed"], calls.len(), "{done}");

    // Its calls, paged and as CSV.
    let page = server
        .get(&format!("/campaigns/{id}/calls?limit=100"))
        .json();
    assert_eq!(page["calls"].as_array().unwrap().len(), 100);
    assert_eq!(page["calls"][0]["to"], number(1));
    assert_eq!(page["calls"][0]["params"]["row"], "1");
    assert_eq!(page["calls"][0]["outcome"], "completed");
    assert_eq!(page["next"], "100");
    let csv = server.get(&format!("/campaigns/{id}/calls.csv"));
    assert_eq!(csv.status, 200);
    let text = String::from_utf8(csv.body.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CONTACTS + 1);
    assert!(lines[0].starts_with("row,to,params,attempts,status"));
    assert!(
        lines[15].starts_with(&format!("15,{},", number(15))) && lines[15].contains(",3,busy,"),
        "{}",
        lines[15]
    );
    assert!(lines[7].contains(",0,skipped-dnc,"), "{}", lines[7]);

    // And /metrics counts it.
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(
        metrics.contains(&format!(
            "exotel_voicebot_campaign_dials_total {}",
            calls.len()
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "exotel_voicebot_campaign_attempts_ended_total{{outcome=\"busy\"}} {}",
        busy * 3
    )));
}

/// The judge after a kill: every contact is done; no contact was called more often than it
/// had attempts (so no attempt was sent twice), busy ones at most three times, listed ones
/// never; each attempt whose outcome is known reached Exotel exactly once. Answers how many
/// attempts are `unknown` (their request was in flight at the kill).
fn judge_every_contact(server: &Server, id: &str, fake: &FakeExotel) -> usize {
    let calls = fake.network_calls();
    let per = calls_per_number(&calls);
    let mut unknown = 0;
    let page = |after: usize| {
        server
            .get(&format!("/campaigns/{id}/calls?limit=1000&after={after}"))
            .json()
    };
    let contacts = page(0);
    let contacts = contacts["calls"].as_array().unwrap();
    assert_eq!(contacts.len(), CONTACTS);
    for (i, contact) in contacts.iter().enumerate() {
        let n = i + 1;
        let count = per.get(&number(n)).copied().unwrap_or(0);
        let outcome = contact["outcome"].as_str().unwrap_or("");
        let attempts = contact["attempts"].as_u64().unwrap() as usize;
        assert_eq!(contact["state"], "done", "{contact}");
        if is_dnc(n) {
            assert_eq!(count, 0, "a listed number was called: {contact}");
            continue;
        }
        let most = if is_busy(n) { 3 } else { 1 };
        assert!(count <= most, "contact {n} called {count} times: {contact}");
        // Each attempt reached Exotel at most once; an attempt whose request was in flight
        // at the kill may or may not have reached it, and is not dialed again.
        assert!(
            count <= attempts,
            "contact {n}: {count} calls for {attempts} attempts"
        );
        if outcome == "unknown" {
            unknown += 1;
            assert!(count + 1 >= attempts, "{contact}");
        } else {
            assert_eq!(count, attempts, "contact {n}: {contact}");
            let expected = if is_busy(n) { "busy" } else { "completed" };
            assert_eq!(outcome, expected, "{contact}");
        }
    }
    unknown
}

#[test]
fn a_campaign_killed_mid_way_resumes_and_never_dials_an_attempt_twice() {
    // Exotel takes 300 ms to answer: at the kill, requests are in flight.
    let fake = network(Duration::from_millis(300));
    let dir = support::temp_dir("campaign-kill");
    let server = start(dir.clone(), &fake, "2026-11-26T10:00:00+05:30");
    list_dnc(&server);
    let id = create(&server);
    // Mid-way: a hundred calls asked for, twenty of them live.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.network_calls().len() < 100 {
        assert!(Instant::now() < deadline, "the campaign did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = server.kill_9();
    let before = fake.network_calls().len();
    let server = start(dir, &fake, "2026-11-26T10:01:00+05:30");
    let done = wait_completed(&server, &id, Duration::from_secs(150));
    let calls = fake.network_calls();
    assert!(calls.len() > before, "nothing was dialed after the restart");

    let unknown = judge_every_contact(&server, &id, &fake);
    // Only the requests in flight at the kill can be unknown: at most the twenty open.
    assert!(unknown <= 20, "{unknown} unknown");
    // The calls live at the kill lost their status callbacks (sent to the dead process): the
    // restarted server asked Exotel's call-details API about them instead.
    let asked = fake
        .received()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/Calls/NET"))
        .count();
    assert!(asked >= 1, "no interrupted call was asked about");
    eprintln!("kill -9 test: {before} calls before the kill, {} after, {asked} asked about, {unknown} unknown", calls.len() - before);
    assert_eq!(done["pending"], 0, "{done}");
    // Across the restart the fake never saw more than twenty live at once either.
    assert!(fake.max_live() <= 20, "{} live at once", fake.max_live());
    let log = server.settled_log().join("\n");
    assert!(!log.contains("campaign-token-0123456789"));
}

#[test]
fn a_campaign_whose_dialing_instance_is_killed_completes_on_the_other_within_its_limits() {
    let Some(pg) = support::postgres::Cluster::start("campaign-instances") else {
        return;
    };
    let fake = network(Duration::from_millis(300));
    // A dead instance's leases lapse after 3 s (INSTANCE_LEASE_S), not the default 30.
    let more = [("DATABASE_URL", pg.url.as_str()), ("INSTANCE_LEASE_S", "3")];
    let clock = "2026-11-26T10:00:00+05:30";
    let a = start_with(support::temp_dir("instance-a"), &fake, clock, &more);
    list_dnc(&a);
    // The second reads the do-not-call list at its start.
    let b = start_with(support::temp_dir("instance-b"), &fake, clock, &more);
    let id = create(&a);
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.network_calls().len() < 100 {
        assert!(Instant::now() < deadline, "the campaign did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One instance dials (the first to take the lease); it dies mid-way.
    let leads = |s: &Server| s.log().iter().any(|l| l.contains("dialer.leading"));
    assert!(leads(&a) != leads(&b), "exactly one instance dials");
    let (dead, survivor) = if leads(&a) { (a, b) } else { (b, a) };
    let _ = dead.kill_9();
    let before = fake.network_calls().len();
    let done = wait_completed(&survivor, &id, Duration::from_secs(150));
    survivor.wait_for_log(&["dialer.leading"]);
    let calls = fake.network_calls();
    assert!(calls.len() > before, "nothing was dialed after the kill");
    let unknown = judge_every_contact(&survivor, &id, &fake);
    assert!(unknown <= 20, "{unknown} unknown");
    assert_eq!(done["pending"], 0, "{done}");
    // maxConcurrent is 20: never more live at once across both instances.
    assert!(fake.max_live() <= 20, "{} live at once", fake.max_live());
    eprintln!(
        "two instances, one killed: {before} calls before the kill, {} after, {unknown} unknown, at most {} live",
        calls.len() - before,
        fake.max_live()
    );
}

#[test]
fn campaigns_are_checked_controlled_and_guarded() {
    let fake = network(Duration::ZERO);
    let server = start(
        support::temp_dir("campaign-api"),
        &fake,
        // A Sunday, outside the days this campaign allows.
        "2026-11-29T12:00:00+05:30",
    );
    // A CSV upload, its settings in the query.
    let r = request(
        server.addr,
        "POST",
        "/campaigns?name=csv&maxConcurrent=2&callsPerMinute=60&days=mon,tue,wed,thu,fri,sat&retryOn=busy,no-answer&retryAttempts=2&retryWaitSeconds=60",
        &[("Content-Type", "text/csv")],
        b"to,name\n+919876543210,Asha\nnot-a-number,X\n",
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let created = r.json();
    assert_eq!(created["total"], 1);
    assert_eq!(created["rejected"][0]["row"], 2);
    assert_eq!(
        created["settings"]["retry"]["on"],
        serde_json::json!(["busy", "no-answer"])
    );
    let id = created["id"].as_str().unwrap().to_owned();
    // Sunday: it waits for Monday, and says when that is (once the dialer has looked).
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = server.get(&format!("/campaigns/{id}")).json();
        if shown["status"] == "waiting-window" {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "never waiting for its window: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        shown["windowOpensAt"], "2026-11-30T03:30:00.000Z",
        "{shown}"
    );

    // Pause, resume, cancel; a second cancel is a conflict.
    let post = |path: &str| request(server.addr, "POST", path, &[], b"");
    assert_eq!(
        post(&format!("/campaigns/{id}/pause")).json()["status"],
        "paused"
    );
    // Resumed on a Sunday, it waits for its window again: the status its clock says, at once.
    assert_eq!(
        post(&format!("/campaigns/{id}/resume")).json()["status"],
        "waiting-window"
    );
    let canceled = post(&format!("/campaigns/{id}/cancel")).json();
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert_eq!(canceled["outcomes"]["canceled"], 1, "{canceled}");
    post(&format!("/campaigns/{id}/cancel")).assert_error(409, "campaign_state");
    assert!(
        fake.network_calls().is_empty(),
        "nothing is dialed on a Sunday"
    );

    // Settings are checked, each error naming its field.
    for (body, named) in [
        (
            r#"{"contacts": ["+919876543210"], "maxConcurrent": 0}"#,
            "maxConcurrent",
        ),
        (
            r#"{"contacts": ["+919876543210"], "callsPerMinute": 100000}"#,
            "callsPerMinute",
        ),
        (
            r#"{"contacts": ["+919876543210"], "retry": {"on": ["completed"]}}"#,
            "retry.on",
        ),
        (
            r#"{"contacts": ["+919876543210"], "window": {"timezone": "Europe/Paris"}}"#,
            "window.timezone",
        ),
        (
            r#"{"contacts": ["+919876543210"], "startAt": "tomorrow"}"#,
            "startAt",
        ),
        (
            r#"{"contacts": ["+919876543210"], "colour": "red"}"#,
            "colour",
        ),
        (r#"{"name": "no contacts"}"#, "contacts"),
        (r#"{"contacts": ["1", "2"]}"#, "rejected"),
    ] {
        let e = server
            .post_json("/campaigns", body)
            .assert_error(400, "bad_request");
        assert!(e.to_string().contains(named), "{named}: {e}");
    }
    server
        .post_json(
            r#"/campaigns"#,
            r#"{"contacts": ["+919876543210"], "from": "08047119999"}"#,
        )
        .assert_error(400, "unknown_phone");
    server.get("/campaigns/nope").assert_error(404, "not_found");

    // A CSV over the upload limit is 413, before it is read.
    let mut conn = support::Conn::open(server.addr);
    conn.send(b"POST /campaigns HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 16777217\r\n\r\n");
    let big = conn.read_response();
    let e = big.assert_error(413, "body_too_large");
    assert!(e["detail"].as_str().unwrap().contains("16777216"), "{e}");
    // The same size is fine for an upload and too much elsewhere: /call keeps its 64 KiB.
    let mut conn = support::Conn::open(server.addr);
    conn.send(b"POST /call HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n");
    conn.read_response().assert_error(413, "body_too_large");

    // A scheduled campaign waits for its start.
    let later = server.post_json(
        "/campaigns",
        r#"{"contacts": ["+919876543211"], "startAt": "2026-12-01T10:00:00+05:30"}"#,
    );
    assert_eq!(later.json()["status"], "scheduled", "{}", later.json());
    assert_eq!(
        server.get("/campaigns").json()["campaigns"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn campaigns_are_guarded_like_call() {
    let server = Server::start(&[("API_TOKEN", "op-token-123")]);
    server.get("/campaigns").assert_error(401, "unauthorized");
    server
        .post_json("/campaigns", r#"{"contacts": ["+919876543210"]}"#)
        .assert_error(401, "unauthorized");
    request(server.addr, "POST", "/campaigns/x/cancel", &[], b"").assert_error(401, "unauthorized");
    request(server.addr, "GET", "/campaigns/x/calls.csv", &[], b"")
        .assert_error(401, "unauthorized");
}

#[test]
fn campaign_status_follows_a_campaign_to_its_end() {
    let fake = FakeExotel::start(Behaviour::Network(Network {
        ring: Duration::from_millis(100),
        talk: Duration::from_millis(600),
        ..Network::default()
    }));
    let server = start(
        support::temp_dir("campaign-status"),
        &fake,
        "2026-11-26T12:00:00+05:30",
    );
    let contacts: Vec<String> = (1..=12).map(number).collect();
    let created = server.post_json(
        "/campaigns",
        &serde_json::json!({"name": "status-demo", "contacts": contacts, "maxConcurrent": 3, "callsPerMinute": 600})
            .to_string(),
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let bin = env!("CARGO_BIN_EXE_exotel-voicebot");
    let addr = server.addr.to_string();

    // Into a pipe: one plain line per update, the last one complete.
    let piped = std::process::Command::new(bin)
        .args([
            "campaign",
            "status",
            &id,
            "--server",
            &addr,
            "--interval-ms",
            "100",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    let text = String::from_utf8(piped.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    assert!(
        lines.iter().all(|l| l.starts_with("status-demo ")),
        "{text}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("status-demo 12/12  dialed 12  answered 12  failed 0  left 0")
            && last.ends_with("completed"),
        "{last}"
    );
    assert!(!text.contains('\r'), "no redrawing into a pipe");

    // On a terminal (a pseudo-terminal from script(1)): the bar, redrawn in place.
    let shown = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{bin} campaign status {id} --server {addr} --once"),
            "/dev/null",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(
        screen.contains(
            "\rstatus-demo [##############################] 100%  dialed 12  answered 12"
        ),
        "{screen:?}"
    );

    // An unknown campaign is named, exit 2.
    let missing = std::process::Command::new(bin)
        .args(["campaign", "status", "nope", "--server", &addr])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

#[test]
fn a_caller_who_presses_the_key_is_put_on_the_do_not_call_list() {
    let fake = FakeExotel::start(Behaviour::Network(Network {
        ring: Duration::from_millis(100),
        talk: Duration::from_secs(8),
        ..Network::default()
    }));
    let server = start(
        support::temp_dir("campaign-key"),
        &fake,
        "2026-11-26T12:00:00+05:30",
    );
    let created = server.post_json(
        "/campaigns",
        &serde_json::json!({"contacts": [{"to": number(1), "params": {"name": "Asha"}}]})
            .to_string(),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let deadline = Instant::now() + Duration::from_secs(10);
    let call = loop {
        if let Some(call) = fake.network_calls().into_iter().next() {
            break call;
        }
        assert!(Instant::now() < deadline, "the campaign never dialed");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Exotel connects the answered call to the media URL the dial gave it; the caller
    // presses 9.
    let url = fake
        .call_for(&call.custom_field)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "StreamUrl")
        .unwrap()
        .1;
    let caller = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args([
            "simulate",
            "--url",
            &url,
            "--seconds",
            "1",
            "--dtmf",
            "9",
            "--no-echo-check",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(caller.status.success(), "{caller:?}");
    server.wait_for_log(&["campaign.do_not_call", &call.custom_field]);
    let listed = server.get("/dnc").json();
    assert_eq!(
        listed["numbers"],
        serde_json::json!([number(1)]),
        "{listed}"
    );
    let row = server.get(&format!("/calls/{}", call.custom_field)).json();
    assert_eq!(row["doNotCall"], true, "{row}");
    assert!(row["dtmf"].as_str().unwrap().contains('9'), "{row}");
}

#[test]
fn a_campaigns_calls_are_a_filter_of_the_call_log_and_a_contact_waiting_to_be_called_again_is_retrying(
) {
    let fake = FakeExotel::start(Behaviour::Network(Network {
        ring: Duration::from_millis(100),
        talk: Duration::from_millis(300),
        busy: vec![number(2)],
        ..Network::default()
    }));
    let server = start(
        support::temp_dir("campaign-retrying"),
        &fake,
        "2026-11-26T12:00:00+05:30",
    );
    let body = serde_json::json!({
        "name": "retrying",
        "contacts": [number(1), number(2), number(3)],
        "retry": {"on": ["busy"], "attempts": 2, "waitSeconds": 3600},
    });
    let created = server.post_json("/campaigns", &body.to_string());
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let progress = loop {
        let p = server.get(&format!("/campaigns/{id}")).json();
        if p["completed"] == 2 && p["retrying"] == 1 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "never two done and one retrying: {p}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        progress["pending"], 1,
        "the retrying contact is pending: {progress}"
    );
    let calls = server.get(&format!("/calls?campaign={id}")).json();
    let numbers: std::collections::BTreeSet<&str> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [number(1), number(2), number(3)]
            .iter()
            .map(String::as_str)
            .collect(),
        "{calls}"
    );
    let none = server.get("/calls?campaign=not-a-campaign").json();
    assert_eq!(none["calls"], serde_json::json!([]));
    let csv = String::from_utf8(server.get(&format!("/calls.csv?campaign={id}")).body).unwrap();
    assert_eq!(csv.lines().count(), 4, "a header and three calls: {csv}");
}
