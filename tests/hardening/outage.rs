//! The bot's outage stays on the row when the caller hangs up during its tone.

use super::*;

#[test]
fn a_caller_who_hangs_up_during_the_outage_tone_leaves_the_outage_on_the_row() {
    use tungstenite::Message;
    let port = closed_port();
    let server = support::relay_server(&format!("ws://127.0.0.1:{port}/bot"), &[]);
    let r = server.get("/voicebot/connect?CallSid=CA-out&CustomField=outage-1");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    let mut ws = support::ws_connect(server.addr, &url[url.find("/media").unwrap()..]).unwrap();
    ws.send(Message::text(r#"{"event":"connected"}"#)).unwrap();
    ws.send(Message::text(
        r#"{"event":"start","sequence_number":"1","stream_sid":"S-out","start":{"stream_sid":"S-out","call_sid":"CA-out","custom_parameters":{},"media_format":{"encoding":"base64","sample_rate":"8000"}}}"#,
    ))
    .unwrap();
    // The tone's first chunk: the bot could not be reached and the fallback is speaking.
    loop {
        let Message::Text(text) = ws.read().expect("the tone") else {
            continue;
        };
        if text.contains("\"media\"") {
            break;
        }
    }
    // The caller hangs up before the tone ends.
    ws.send(Message::text(
        r#"{"event":"stop","stop":{"call_sid":"CA-out","reason":"callended"}}"#,
    ))
    .unwrap();
    let _ = ws.close(None);
    while ws.read().is_ok() {}
    let row = wait_for_row(&server, "outage-1", |r| r["status"] != "in-progress");
    assert_eq!(row["status"], "bot-unavailable", "{row}");
}
