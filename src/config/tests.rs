//! The unit tests of `config.rs`.

use super::*;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_run_without_any_variable() {
    let c = config(&[]).unwrap();
    assert_eq!(c.port, 3000);
    assert_eq!(c.public_base_url, None);
    assert_eq!(c.exotel.api_base_url, "https://api.exotel.com");
    assert_eq!(c.exotel.connect_mode, ConnectMode::Stream);
    assert_eq!(c.sample_rate, 8000);
    assert_eq!(
        c.exotel.missing_for_calls(),
        [
            "EXOTEL_API_KEY",
            "EXOTEL_API_TOKEN",
            "EXOTEL_SID",
            "EXOTEL_CALLER_ID"
        ]
    );
}

#[test]
fn a_wrong_value_names_its_variable() {
    let e = config(&[("PORT", "abc")]).unwrap_err();
    assert_eq!(e.variable, "PORT");
    assert!(e.to_string().starts_with("PORT: \"abc\""), "{e}");
    assert_eq!(
        config(&[("WEBHOOK_BASE_URL", "example.com")])
            .unwrap_err()
            .variable,
        "WEBHOOK_BASE_URL"
    );
    assert_eq!(
        config(&[("SAMPLE_RATE", "11025")]).unwrap_err().variable,
        "SAMPLE_RATE"
    );
    assert_eq!(
        config(&[("EXOTEL_TIMEOUT_MS", "0")]).unwrap_err().variable,
        "EXOTEL_TIMEOUT_MS"
    );
    assert_eq!(
        config(&[("EXOTEL_CONNECT_MODE", "x")])
            .unwrap_err()
            .variable,
        "EXOTEL_CONNECT_MODE"
    );
}

#[test]
fn the_relay_is_configured_and_checked() {
    let relay = |pairs: &[(&str, &str)]| {
        let mut all = vec![("BOT", "relay")];
        all.extend_from_slice(pairs);
        config(&all)
    };
    assert_eq!(relay(&[]).unwrap_err().variable, "BOT_URL");
    for (var, value) in [
        ("BOT_URL", "http://bot/ws"),
        ("BOT_URL", "ws://"),
        ("BOT_URL", "ws://bot:0/x"),
        ("BOT_URL", "ws://bot:99999"),
        ("BOT_URL", "wss://user:pw@bot/x"),
        ("BOT_URL", "ws://[::1/x"),
        ("BOT_URL", "ws://::1/x"),
        ("BOT_HEADERS", "Authorization: x"),
        ("BOT_HEADERS", r#"{"Authorization": 5}"#),
        ("BOT_HEADERS", r#"{"Bad Name": "x"}"#),
        ("BOT_HEADERS", r#"{"Host": "x"}"#),
        ("BOT_HEADERS", r#"{"X-A": "a\nb"}"#),
        ("BOT_FALLBACK", "retry"),
        ("BOT_PROTOCOL", "pipecat"),
        ("BOT_RECONNECT_MS", "10"),
        ("BOT_CONNECT_TIMEOUT_MS", "soon"),
        ("BOT_SEND_BUFFER_BYTES", "100"),
        ("BOT_CA_FILE", "/nonexistent/ca.pem"),
        ("BOT_CA_FILE", "Cargo.toml"),
    ] {
        let mut pairs = vec![("BOT_URL", "ws://127.0.0.1:9/bot")];
        pairs.retain(|(k, _)| *k != var);
        pairs.push((var, value));
        let e = relay(&pairs).unwrap_err();
        assert_eq!(e.variable, var, "{value}: {e}");
    }
    let c = relay(&[
        ("BOT_URL", "wss://bot.example/ws?team=a"),
        ("BOT_HEADERS", r#"{"Authorization": "Bearer t"}"#),
        ("BOT_FALLBACK", "echo"),
    ])
    .unwrap();
    let BotChoice::Relay(r) = c.bot else {
        panic!("BOT=relay gave {:?}", c.bot)
    };
    assert_eq!((r.tls, r.host.as_str(), r.port), (true, "bot.example", 443));
    assert_eq!(r.headers, [("Authorization".into(), "Bearer t".into())]);
    assert_eq!(r.fallback, Fallback::Echo);
    assert_eq!(
        r.protocol,
        BotProtocol::Exotel,
        "Exotel's own unless BOT_PROTOCOL says"
    );
    let BotChoice::Relay(t) = relay(&[("BOT_URL", "ws://b/x"), ("BOT_PROTOCOL", "twilio")])
        .unwrap()
        .bot
    else {
        panic!("not a relay")
    };
    assert_eq!(t.protocol, BotProtocol::Twilio);
    assert_eq!(
        (r.reconnect.as_millis(), r.connect_timeout.as_millis()),
        (1000, 3000)
    );
    let BotChoice::Relay(v6) = relay(&[("BOT_URL", "ws://[::1]:8080")]).unwrap().bot else {
        panic!("not a relay")
    };
    assert_eq!((v6.host.as_str(), v6.port, v6.tls), ("::1", 8080, false));
    assert!(matches!(config(&[]).unwrap().bot, BotChoice::Echo));
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.pem");
    let BotChoice::Relay(private) = relay(&[("BOT_URL", "wss://localhost/x"), ("BOT_CA_FILE", ca)])
        .unwrap()
        .bot
    else {
        panic!("not a relay")
    };
    assert_eq!(private.extra_roots.len(), 1);
}

#[test]
fn a_bot_url_is_read_or_refused_with_its_reason() {
    for (url, why) in [
        ("http://bot/ws", "has no ws:// or wss:// scheme"),
        ("bot:9/ws", "has no ws:// or wss:// scheme"),
        ("ws://bot/a b", "must not hold spaces or a fragment"),
        ("ws://bot/ws#x", "must not hold spaces or a fragment"),
        (
            "wss://user:pw@bot/x",
            "holds credentials: put them in BOT_HEADERS as an Authorization header",
        ),
        ("ws://[::1/x", "has an unclosed [IPv6 address"),
        ("ws://", "has no host"),
        ("ws://:9/x", "has no host"),
        ("ws://::1/x", "has an IPv6 address without [brackets]"),
        ("ws://bot:0/x", "has a port that is not 1..=65535"),
        ("ws://bot:99999", "has a port that is not 1..=65535"),
    ] {
        assert_eq!(BotAddress::parse(url), Err(why), "{url}");
    }
    let read = |url| BotAddress::parse(url).unwrap();
    let address = |tls, host: &str, port| BotAddress {
        tls,
        host: host.into(),
        port,
    };
    assert_eq!(read("ws://bot/ws"), address(false, "bot", 80));
    assert_eq!(read("wss://bot?team=a"), address(true, "bot", 443));
    assert_eq!(read("wss://bot:8443/ws"), address(true, "bot", 8443));
    assert_eq!(read("ws://[::1]/x"), address(false, "::1", 80));
    assert_eq!(read("wss://[::1]:9/x"), address(true, "::1", 9));
}

#[test]
fn media_and_call_log_variables_are_checked_too() {
    for (var, value) in [
        ("RECORD", "maybe"),
        ("MAX_CONCURRENT_CALLS", "0"),
        ("MEDIA_PORT", "http"),
        ("MEDIA_LEAD_MS", "-5"),
        ("SHUTDOWN_GRACE_S", "forever"),
        ("CALL_SLOT_TIMEOUT_S", "0"),
        ("BOT", "llm"),
    ] {
        let e = config(&[(var, value)]).unwrap_err();
        assert_eq!(e.variable, var, "{e}");
    }
    let c = config(&[("RECORD", "on"), ("MEDIA_PORT", "3001")]).unwrap();
    assert!(c.record);
    assert_eq!(c.media_port, Some(3001));
    let d = config(&[]).unwrap();
    assert_eq!(
        (
            d.max_concurrent_calls,
            d.call_slot_timeout.as_secs(),
            d.shutdown_grace.as_secs()
        ),
        (50, 7200, 30)
    );
    assert_eq!(d.data_dir, std::path::PathBuf::from("./data"));
    assert!(!d.record);
}

#[test]
fn phone_keys_are_one_key_or_off_and_errors_name_the_variable() {
    let c = config(&[]).unwrap();
    assert_eq!(
        (c.campaign_dnc_key, c.media.handoff_dtmf),
        (Some('9'), None)
    );
    let c = config(&[("CAMPAIGN_DNC_KEY", "off"), ("HANDOFF_DTMF", "#")]).unwrap();
    assert_eq!(
        (c.campaign_dnc_key, c.media.handoff_dtmf),
        (None, Some('#'))
    );
    for (name, value) in [("HANDOFF_DTMF", "12"), ("CAMPAIGN_DNC_KEY", "x")] {
        assert_eq!(config(&[(name, value)]).unwrap_err().variable, name);
    }
}

#[test]
fn media_loops_default_to_the_cores_and_stop_at_1024() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(config(&[]).unwrap().media_loops, cores);
    assert_eq!(config(&[("MEDIA_LOOPS", "0")]).unwrap().media_loops, 0);
    assert_eq!(
        config(&[("MEDIA_LOOPS", "1024")]).unwrap().media_loops,
        1024
    );
    for bad in ["1025", "-1", "many"] {
        let e = config(&[("MEDIA_LOOPS", bad)]).unwrap_err();
        assert_eq!(e.variable, "MEDIA_LOOPS", "{e}");
    }
}

#[test]
fn the_media_loops_rest_is_checked_at_both_edges() {
    let rest = |v: &str| config(&[("MEDIA_LOOP_REST_MS", v)]).map(|c| c.media_loop_rest);
    assert_eq!(config(&[]).unwrap().media_loop_rest, DEFAULT_LOOP_REST);
    assert_eq!(rest("0").unwrap(), Duration::ZERO);
    assert_eq!(rest("20").unwrap(), Duration::from_millis(MAX_LOOP_REST_MS));
    for bad in ["21", "-1", "1.5"] {
        let e = rest(bad).unwrap_err();
        assert_eq!(e.variable, "MEDIA_LOOP_REST_MS", "{e}");
    }
}

#[test]
fn base_url_precedence_and_applet_mode() {
    let c = config(&[
        ("RENDER_EXTERNAL_URL", "https://render.example/"),
        ("EXOTEL_APP_ID", "123"),
        ("EXOTEL_SUBDOMAIN", "api.in.exotel.com"),
    ])
    .unwrap();
    assert_eq!(c.public_base_url.as_deref(), Some("https://render.example"));
    assert_eq!(c.exotel.connect_mode, ConnectMode::Applet);
    assert_eq!(c.exotel.api_base_url, "https://api.in.exotel.com");
    let c = config(&[
        ("RENDER_EXTERNAL_URL", "https://render.example"),
        ("WEBHOOK_BASE_URL", "https://mine.example"),
    ])
    .unwrap();
    assert_eq!(c.public_base_url.as_deref(), Some("https://mine.example"));
}

#[test]
fn dotenv_lines() {
    let vars = parse_dotenv(
        "# comment\nEXOTEL_SID=abc # trailing\nexport PORT=8080\nA=\"x \\\"y\\\"\"\nB='raw # kept'\nEMPTY=\n",
    )
    .unwrap();
    assert_eq!(vars["EXOTEL_SID"], "abc");
    assert_eq!(vars["PORT"], "8080");
    assert_eq!(vars["A"], "x \"y\"");
    assert_eq!(vars["B"], "raw # kept");
    assert_eq!(vars["EMPTY"], "");
    assert_eq!(vars.len(), 5);
}

#[test]
fn dotenv_quoted_value_with_a_quoted_comment() {
    // The newcomer's case: a quote inside the comment after a quoted value.
    let vars =
        parse_dotenv("EXOTEL_SID=\"abc\" # say \"hi\"\nPORT='3001' # it's 'ours'\n").unwrap();
    assert_eq!(vars["EXOTEL_SID"], "abc");
    assert_eq!(vars["PORT"], "3001");
    // A line that is not KEY=value is an error naming it.
    let e = parse_dotenv("PORT=1\nnot a line\n").unwrap_err();
    assert!(e.contains("not a line"), "{e}");
}

#[test]
fn values_that_go_into_urls_are_checked() {
    for (var, value) in [
        ("EXOTEL_SID", "acme/../other"),
        ("EXOTEL_SID", "acme?x=1"),
        ("EXOTEL_SID", ".."),
        ("EXOTEL_APP_ID", "77 78"),
        ("EXOTEL_APP_ID", "77#"),
    ] {
        let e = config(&[(var, value)]).unwrap_err();
        assert_eq!(e.variable, var, "{value}");
        assert!(e.problem.contains(value), "{e}");
    }
    let ok = config(&[("EXOTEL_SID", "acme_co-1.in"), ("EXOTEL_APP_ID", "12345")]).unwrap();
    assert_eq!(ok.exotel.sid.as_deref(), Some("acme_co-1.in"));
}

#[test]
fn realtime_placeholders_are_found_and_filled() {
    let settings = RealtimeSettings {
        instructions: "Collect {{ amount }} from {{name}}; {{name}} again; {{ }} and {{open".into(),
        voice: "marin".into(),
        greeting: Some("Hello {{name}}, about {{due}}".into()),
        turn_detection: TurnDetection::ServerVad,
        transcription_model: TRANSCRIPTION_MODEL.into(),
    };
    assert_eq!(settings.placeholders(), ["amount", "name", "due"]);
    let values: std::collections::BTreeMap<String, String> = [
        ("name".to_owned(), "Asha".to_owned()),
        ("amount".into(), "1200".into()),
    ]
    .into();
    assert_eq!(
        RealtimeSettings::fill(&settings.instructions, &values),
        "Collect 1200 from Asha; Asha again;  and {{open"
    );
    assert_eq!(
        RealtimeSettings::fill("Hello {{name}}, about {{due}}", &values),
        "Hello Asha, about "
    );
    // BOT=realtime needs its key, named; the key never appears in an error.
    let e = Config::from_lookup(|k| (k == "BOT").then(|| "realtime".to_owned())).unwrap_err();
    assert_eq!(e.variable, "OPENAI_API_KEY");
    let e = Config::from_lookup(|k| match k {
        "BOT" => Some("realtime".to_owned()),
        "OPENAI_API_KEY" => Some("sk-secret-abc".to_owned()),
        "REALTIME_URL" => Some("http://not-a-ws-url".to_owned()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.variable, "REALTIME_URL", "{e}");
    assert!(!e.to_string().contains("sk-secret-abc"), "{e}");
}

#[test]
fn realtime_turn_detection_is_server_vad_or_semantic_vad_with_an_eagerness() {
    let read = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    };
    let defaults = read(&[]).unwrap().agent_bots.realtime;
    assert_eq!(defaults.settings.turn_detection, TurnDetection::ServerVad);
    assert_eq!(defaults.settings.transcription_model, TRANSCRIPTION_MODEL);
    assert!(defaults.key.is_none());
    let semantic = read(&[
        ("REALTIME_TURN_DETECTION", "semantic_vad"),
        ("REALTIME_EAGERNESS", "low"),
    ])
    .unwrap();
    assert_eq!(
        semantic.agent_bots.realtime.settings.turn_detection,
        TurnDetection::SemanticVad(Eagerness::Low)
    );
    for (pairs, variable) in [
        (
            &[("REALTIME_TURN_DETECTION", "push_to_talk")][..],
            "REALTIME_TURN_DETECTION",
        ),
        (&[("REALTIME_EAGERNESS", "high")][..], "REALTIME_EAGERNESS"),
        (
            &[
                ("REALTIME_TURN_DETECTION", "semantic_vad"),
                ("REALTIME_EAGERNESS", "eager"),
            ][..],
            "REALTIME_EAGERNESS",
        ),
        (&[("OPENAI_API_KEY", "sk with space")][..], "OPENAI_API_KEY"),
    ] {
        assert_eq!(read(pairs).unwrap_err().variable, variable, "{pairs:?}");
    }
}
