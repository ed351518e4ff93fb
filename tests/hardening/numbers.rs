//! Numbers in other spellings: one listed number is refused however it is written.

use super::*;

/// Spellings of +91 98765 43210 as people write them: with or without +91 or 0091, a
/// trunk 0 before or after the country code, and separators anywhere. Deterministic.
fn spellings_of_one_number(n: usize) -> Vec<String> {
    let national = "9876543210";
    let prefixes = [
        "+91", "+91 0", "+910", "0091", "0091 0", "0", "", "+91 (0)", "(0)",
    ];
    let separators = ["", " ", "-", ".", " - "];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    (0..n)
        .map(|_| {
            let mut out = prefixes[next(prefixes.len())].to_owned();
            out.push_str(separators[next(separators.len())]);
            for (i, digit) in national.chars().enumerate() {
                if i > 0 && next(4) == 0 {
                    out.push_str(separators[next(separators.len())]);
                }
                out.push(digit);
            }
            out
        })
        .collect()
}

#[test]
fn a_listed_number_is_refused_in_every_spelling_by_call_dnc_and_campaigns() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-dnc".into(),
    });
    let mut env = line_env(&fake);
    env.push(("CAMPAIGN_CLOCK_START", "2026-12-07T12:00:00+05:30".into()));
    let server = Server::start(&as_refs(&env));
    let spellings = spellings_of_one_number(200);
    // Listed in one spelling (with the trunk 0 after +91, the one that used to slip through).
    let listed = json_request(
        &server,
        "POST",
        "/dnc",
        r#"{"numbers": ["+91 0 98765 43210"]}"#,
    );
    assert_eq!(listed.json()["added"], 1, "{}", listed.json());
    // Every other spelling is the same entry on the list...
    let body = serde_json::json!({ "numbers": spellings }).to_string();
    let again = json_request(&server, "POST", "/dnc", &body);
    assert_eq!(again.json()["added"], 0, "{}", again.json());
    assert_eq!(
        again.json()["alreadyListed"],
        spellings.len(),
        "{}",
        again.json()
    );
    assert_eq!(
        server.get("/dnc").json()["numbers"],
        serde_json::json!(["+919876543210"])
    );
    // ...and refused by /call, before Exotel hears of it.
    for spelling in &spellings {
        let body = serde_json::json!({ "to": spelling }).to_string();
        let r = server.post_json("/call", &body);
        r.assert_error(403, "do_not_call");
    }
    // A campaign's CSV: one contact (the rest are the same number), skipped at dial time.
    let mut csv = String::from("to\n");
    for spelling in &spellings {
        csv.push_str(&format!("\"{spelling}\"\n"));
    }
    let created = request(
        server.addr,
        "POST",
        "/campaigns?name=spellings&days=mon,tue,wed,thu,fri,sat,sun",
        &[("Content-Type", "text/csv")],
        csv.as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let created = created.json();
    assert_eq!(created["total"], 1, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut shown = serde_json::Value::Null;
    wait_until("the campaign completes", Duration::from_secs(20), || {
        shown = server.get(&format!("/campaigns/{id}")).json();
        shown["status"] == "completed"
    });
    assert_eq!(shown["outcomes"]["skipped-dnc"], 1, "{shown}");
    assert_eq!(fake.received().len(), 0, "Exotel heard of a listed number");
    // Taken off in yet another spelling.
    let removed = request(server.addr, "DELETE", "/dnc/0091-98765-43210", &[], b"");
    assert_eq!(removed.status, 200, "{removed:?}");
    assert_eq!(server.get("/dnc").json()["count"], 0);
}
