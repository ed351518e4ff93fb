//! README.md's examples, then docs/GUIDE.md's, run in order exactly as written against one
//! real binary and a fake Exotel, each answer compared with the JSON the file shows after it.
//!
//! The rules: a ```sh block whose lines start with `curl ` or `exotel-voicebot ` is an example;
//! the ```json block right after it is its answer. In the answer, `<…>` inside a string stands for
//! any text, and an object lists the fields checked (the answer may have more). The README's
//! `.env` block is the server's `.env`, with only the API's address pointed at the fake Exotel.
//! `localhost:3000` becomes the test server's port, `<Exotel's CallSid>` in a command the
//! CallSid the fake Exotel gave, and `<campaign id>` the `id` of the last answer that had one.
//! The README's ```csv block is `contacts.csv` in the working directory, where the examples
//! run. An answer in a ```text block is the command's output line, `<…>` standing for any text.

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use serde_json::Value;
use std::process::Command;

const FAKE_CALL_SID: &str = "CA-readme-1";

/// Fenced blocks of the README: (language, text).
fn blocks(readme: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let mut text = String::new();
        for inner in lines.by_ref() {
            if inner.starts_with("```") {
                break;
            }
            text.push_str(inner);
            text.push('\n');
        }
        out.push((lang.trim().to_owned(), text));
    }
    out
}

fn is_example(lang: &str, text: &str) -> bool {
    lang == "sh" && (text.starts_with("curl ") || text.starts_with("exotel-voicebot "))
}

/// `expected` matches `actual`: see the module doc.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(k, v)| got.get(k).is_some_and(|g| matches(v, g))),
        (Value::String(want), Value::String(got)) => string_matches(want, got),
        (want, got) => want == got,
    }
}

/// `<…>` in `pattern` matches any text (at least one character).
fn string_matches(pattern: &str, text: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        literals.push(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    literals.push(rest);
    if literals.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    if !text.starts_with(first) || !text.ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut at = first.len();
    let end = text.len() - last.len();
    for literal in &literals[1..literals.len() - 1] {
        match text[at + 1..end].find(literal) {
            Some(i) => at = at + 1 + i + literal.len(),
            None => return false,
        }
    }
    end > at
}

#[test]
fn the_matcher_is_strict_where_the_readme_is_literal() {
    let want: Value = serde_json::from_str(r#"{"a":"x<any>y","n":1}"#).unwrap();
    assert!(matches(
        &want,
        &serde_json::json!({"a": "x123y", "n": 1, "more": true})
    ));
    assert!(!matches(&want, &serde_json::json!({"a": "xy", "n": 1})));
    assert!(!matches(&want, &serde_json::json!({"a": "x1z", "n": 1})));
    assert!(!matches(&want, &serde_json::json!({"a": "x1y", "n": 2})));
    assert!(!matches(&want, &serde_json::json!({"n": 1})));
}

#[test]
fn the_readme_examples_work_as_written_in_order() {
    let read = |file: &str| {
        std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let mut blocks = blocks(&read("README.md"));
    blocks.extend(self::blocks(&read("docs/GUIDE.md")));

    // The server, started the README's way: its .env block in the working directory.
    let dotenv = blocks
        .iter()
        .find(|(lang, text)| lang == "sh" && text.starts_with("EXOTEL_API_KEY="))
        .map(|(_, text)| text.clone())
        .expect("the README's .env block");
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: FAKE_CALL_SID.into(),
    });
    let dir = support::temp_dir("readme");
    std::fs::write(dir.join(".env"), &dotenv).unwrap();
    let csv = blocks
        .iter()
        .find(|(lang, _)| lang == "csv")
        .map(|(_, text)| text.clone())
        .expect("the README's contacts.csv");
    std::fs::write(dir.join("contacts.csv"), csv).unwrap();
    let server =
        support::Server::start_in(dir.clone(), &[("EXOTEL_API_BASE_URL", &fake.base_url())]);
    let port = server.addr.port().to_string();

    let mut ran = 0;
    let mut campaign_id = String::new();
    for (i, (lang, text)) in blocks.iter().enumerate() {
        if !is_example(lang, text) {
            continue;
        }
        let (answer_lang, answer) = blocks.get(i + 1).expect("an answer after the example");
        assert!(
            answer_lang == "json" || answer_lang == "text",
            "the block after {text} must be its answer, JSON or text"
        );
        let command = text
            .replace("localhost:3000", &format!("localhost:{port}"))
            .replace("<Exotel's CallSid>", FAKE_CALL_SID)
            .replace("<campaign id>", &campaign_id);
        let out = if let Some(args) = command.strip_prefix("exotel-voicebot ") {
            Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
                .args(args.split_whitespace())
                .current_dir(&dir)
                .env_clear()
                .env("PORT", &port)
                .output()
                .unwrap()
        } else {
            Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(&dir)
                .output()
                .unwrap()
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
        if answer_lang == "text" {
            assert!(
                string_matches(answer.trim(), stdout.trim()),
                "{command}\nREADME shows: {answer}\nit printed: {stdout}"
            );
            continue;
        }
        let expected: Value =
            serde_json::from_str(&answer.replace("localhost:3000", &format!("localhost:{port}")))
                .unwrap_or_else(|e| panic!("the README's answer is not JSON ({e}): {answer}"));
        let actual: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{command} printed no JSON ({e}): {stdout}"));
        assert!(
            matches(&expected, &actual),
            "{command}\nREADME shows: {expected}\nthe server answered: {actual}"
        );
        if let Some(id) = actual["id"].as_str() {
            campaign_id = id.to_owned();
        }
    }
    // Every example: in Try it health, /call, the webhook, health, the row, the `call`
    // command; in A voice bot in five minutes the agent and its call; in Campaigns the CSV
    // upload, its status, `campaign status`.
    assert_eq!(ran, 11, "examples run");
}

#[test]
fn try_it_works_with_the_fake_exotel_command_instead_of_an_account() {
    // The README's way: `exotel-voicebot fake-exotel` in one terminal, the server with the
    // README's .env and its last line uncommented in another (on free ports here, not 3001).
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let dotenv = blocks(&readme)
        .into_iter()
        .find(|(lang, text)| lang == "sh" && text.starts_with("EXOTEL_API_KEY="))
        .map(|(_, text)| text)
        .expect("the README's .env block");
    let commented = "# EXOTEL_API_BASE_URL=http://127.0.0.1:3001";
    assert!(dotenv.contains(commented), "{dotenv}");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let dir = support::temp_dir("readme-fake");
    let mut fake = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args([
            "fake-exotel",
            "--port",
            &port.to_string(),
            "--ring-ms",
            "200",
        ])
        .current_dir(&dir)
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "fake-exotel did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let uncommented = dotenv.replace(
        commented,
        &format!("EXOTEL_API_BASE_URL=http://127.0.0.1:{port}"),
    );
    std::fs::write(dir.join(".env"), uncommented).unwrap();
    let server = support::Server::start_in(dir, &[]);
    let placed = server.post_json(
        "/call",
        r#"{"to": "+919876543210", "callLogId": "try-it-fake"}"#,
    );
    let _ = fake.kill();
    let _ = fake.wait();
    assert_eq!(placed.status, 200, "{placed:?}");
    assert!(
        placed.json()["callSid"]
            .as_str()
            .is_some_and(|s| s.starts_with("NET")),
        "{}",
        placed.json()
    );
}

#[test]
fn the_guides_json_campaign_is_taken_as_written() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md")).unwrap();
    let body = blocks(&guide)
        .into_iter()
        .find(|(lang, text)| lang == "json" && text.starts_with(r#"{"name": "reminders-nov""#))
        .map(|(_, text)| text)
        .expect("the guide's JSON campaign");
    let server = support::Server::start(&[]);
    let created = server.post_json("/campaigns", &body);
    assert_eq!(created.status, 201, "{}", created.json());
    assert_eq!(created.json()["total"], 1);
}
