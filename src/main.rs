//! The command line: `serve` (the default), `call <to>`, `simulate`, `test-bot`, `--help`,
//! `--version`.
//! Exit codes: 0 success, 1 failure at run time (Exotel refused, port taken), 2 bad usage or
//! configuration.

use exotel_voicebot::app::exotel_client;
use exotel_voicebot::calls::{CallLogId, PhoneNumber};
use exotel_voicebot::config::{Config, ConnectMode};
use exotel_voicebot::exotel::{CallOptions, CallTarget, ConnectCall};
use std::process::ExitCode;

const USAGE: &str = "\
exotel-voicebot: the telephony edge between Exotel and a voice bot

usage:
  exotel-voicebot [serve]                         run the server (PORT, default 3000)
  exotel-voicebot call <to> [--call-log-id ID]    place one call through Exotel, print the answer
  exotel-voicebot simulate [options]              play Exotel's side of calls against a server
  exotel-voicebot test-bot [--port P] [--echo-delay-ms MS]
                                                  run an upstream echo bot for BOT=relay to try
                                                  (ws://127.0.0.1:P/bot, default port 3002)
  exotel-voicebot --help | --version

simulate options:
  --server ADDR        the server (default 127.0.0.1:3000)
  --path PATH          connect webhook to ask (default /voicebot/connect)
  --secret S           WEBHOOK_SECRET for the webhook
  --url WS_URL         skip the webhook and open this media URL (MEDIA_SECRET, MEDIA_PORT)
  --outbound           POST /call instead; answers it with a fake Exotel on --exotel-port
  --exotel-port P      the fake Exotel's port (default 3001; start the server with
                       EXOTEL_API_BASE_URL=http://127.0.0.1:P and any credentials)
  --to NUMBER          the number for --outbound (default +919876543210)
  --wav FILE           caller audio (16-bit PCM WAV); default: a built-in voice-like signal
  --seconds S          length of the built-in signal (default 3)
  --rate HZ            sample rate of the built-in signal: 8000, 16000, 24000 (default 8000)
  --chunk-ms MS        caller chunk length (default 100)
  --dtmf KEYS          keys to press after the audio, e.g. 12# (# makes the echo bot hang up)
  --echo-delay-ms MS   the server's ECHO_DELAY_MS, to check the echo (default 400)
  --calls N            calls at once (default 1)
  --ramp S             seconds over which to start them (default 1)
  --record FILE        save what the bot sent (the first call) as WAV

Configuration comes from the environment and a .env file in the working directory;
README.md lists every variable.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => serve(),
        ["call", rest @ ..] => call(rest),
        ["simulate", rest @ ..] => simulate(rest),
        ["test-bot", rest @ ..] => test_bot(rest),
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["--version" | "-V"] => {
            println!("exotel-voicebot {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// An upstream bot written from Exotel's protocol (`sim::bot::TestBot`) on loopback, until
/// killed: for trying `BOT=relay` and for measuring it (`bench/relay-latency`).
fn test_bot(args: &[&str]) -> ExitCode {
    let mut port = 3002u16;
    let mut delay = 400u32;
    let mut rest = args;
    while let [name, value, tail @ ..] = rest {
        let parsed = match *name {
            "--port" => value.parse().map(|v| port = v).is_ok(),
            "--echo-delay-ms" => value.parse().map(|v| delay = v).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("exotel-voicebot test-bot: bad option {name} {value:?} (see --help)");
            return ExitCode::from(2);
        }
        rest = tail;
    }
    if !rest.is_empty() {
        eprintln!(
            "exotel-voicebot test-bot: {:?} needs a value (see --help)",
            rest[0]
        );
        return ExitCode::from(2);
    }
    match exotel_voicebot::sim::bot::TestBot::start_on(port, delay) {
        Ok(bot) => {
            println!("test bot listening on {}", bot.url());
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("exotel-voicebot test-bot: 127.0.0.1:{port}: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|e| {
        eprintln!("exotel-voicebot: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn serve() -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        // A backtrace only when asked for (RUST_BACKTRACE=1), on the same line.
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            exotel_voicebot::error!(
                "panic",
                at = location,
                thread = thread,
                detail = info,
                backtrace = trace
            );
        } else {
            exotel_voicebot::error!("panic", at = location, thread = thread, detail = info);
        }
    }));
    match exotel_voicebot::serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exotel-voicebot: cannot serve: {e}");
            ExitCode::from(1)
        }
    }
}

fn call(args: &[&str]) -> ExitCode {
    let (to, call_log_id) = match args {
        [to] => (*to, None),
        [to, "--call-log-id", id] => (*to, Some(*id)),
        _ => {
            eprintln!("usage: exotel-voicebot call <to> [--call-log-id ID]");
            return ExitCode::from(2);
        }
    };
    let to = match PhoneNumber::parse(to) {
        Ok(to) => to,
        Err(e) => {
            eprintln!("exotel-voicebot: to: {e}");
            return ExitCode::from(2);
        }
    };
    let call_log_id = match call_log_id.map(CallLogId::parse).transpose() {
        Ok(id) => id.unwrap_or_else(CallLogId::generate),
        Err(e) => {
            eprintln!("exotel-voicebot: --call-log-id {e}");
            return ExitCode::from(2);
        }
    };
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // In stream mode the media token in StreamUrl must be one the running server issued, which a
    // separate process cannot do: ask the server instead.
    if config.exotel.connect_mode == ConnectMode::Stream {
        eprintln!(
            "exotel-voicebot: `call` needs the applet flow (EXOTEL_APP_ID set); in stream mode the media token must come from the running server, so use: curl -X POST http://localhost:{}/call -H 'Content-Type: application/json' -d '{{\"to\":\"{}\"}}'",
            config.port,
            to.as_str()
        );
        return ExitCode::from(2);
    }
    let client = match exotel_client(&config) {
        Ok(client) => client,
        Err(missing) => {
            eprintln!(
                "exotel-voicebot: placing calls needs {}",
                missing.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    let request = ConnectCall {
        to,
        caller_id: config.exotel.caller_id.clone().unwrap_or_default(),
        target: CallTarget::Applet {
            app_id: config.exotel.app_id.clone().unwrap_or_default(),
        },
        call_log_id: call_log_id.clone(),
        options: CallOptions::default(),
    };
    // A plain thread, not a coroutine: blocking here is fine.
    match client.connect_call(&request) {
        Ok(placed) => {
            let answer = serde_json::json!({
                "callLogId": call_log_id.as_str(),
                "callSid": placed.call_sid,
                "status": placed.status,
            });
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exotel-voicebot: {e}");
            ExitCode::from(1)
        }
    }
}

fn simulate(args: &[&str]) -> ExitCode {
    match simulate_with(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("exotel-voicebot simulate: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the simulation; `Ok(true)` when every call was clean.
fn simulate_with(args: &[&str]) -> Result<bool, String> {
    use exotel_voicebot::sim::{self, CallPlan, Connect};
    use std::collections::HashMap;
    use std::time::Duration;
    let flags = ["--outbound"];
    let mut opts: HashMap<&str, &str> = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let name = args[i];
        if flags.contains(&name) {
            opts.insert(name, "");
            i += 1;
        } else if name.starts_with("--") && i + 1 < args.len() {
            opts.insert(name, args[i + 1]);
            i += 2;
        } else {
            return Err(format!("unexpected {name:?} (see --help)"));
        }
    }
    let num = |name: &str, default: u64| -> Result<u64, String> {
        opts.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name} {v:?} is not a whole number"))
            })
            .unwrap_or(Ok(default))
    };
    let server_text = opts.get("--server").copied().unwrap_or("127.0.0.1:3000");
    let server_text = server_text
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let server: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(server_text)
        .map_err(|e| format!("--server {server_text:?}: {e}"))?
        .next()
        .ok_or("--server resolves to nothing")?;
    let (rate, audio) = match opts.get("--wav") {
        Some(path) => {
            let mut file = std::fs::File::open(path).map_err(|e| format!("--wav {path}: {e}"))?;
            let wav = exotel_voicebot::media::audio::read_wav(&mut file)
                .map_err(|e| format!("--wav {path}: {e}"))?;
            if !exotel_voicebot::exotel::stream::SAMPLE_RATES.contains(&wav.sample_rate) {
                return Err(format!(
                    "--wav {path}: {} Hz; Exotel streams 8000, 16000 or 24000",
                    wav.sample_rate
                ));
            }
            (wav.sample_rate, wav.samples)
        }
        None => {
            let rate = num("--rate", 8000)? as u32;
            if !exotel_voicebot::exotel::stream::SAMPLE_RATES.contains(&rate) {
                return Err(format!("--rate {rate}: use 8000, 16000 or 24000"));
            }
            let ms = num("--seconds", 3)? as u32 * 1000;
            (
                rate,
                exotel_voicebot::media::audio::speech_like(rate, ms, 1),
            )
        }
    };
    let mut plan = CallPlan::new(server, audio);
    plan.sample_rate = rate;
    plan.chunk_ms = num("--chunk-ms", 100)? as u32;
    plan.echo_delay_ms = num("--echo-delay-ms", 400)? as u32;
    plan.dtmf = opts.get("--dtmf").copied().unwrap_or("").to_owned();
    let _fake;
    plan.connect = if let Some(url) = opts.get("--url") {
        Connect::Url(url.to_string())
    } else if opts.contains_key("--outbound") {
        let port = num("--exotel-port", 3001)? as u16;
        let fake = std::sync::Arc::new(
            sim::fake_exotel::FakeExotel::start_on(
                port,
                sim::fake_exotel::Behaviour::Accept {
                    sid: "sim-call".into(),
                },
            )
            .map_err(|e| format!("fake Exotel on 127.0.0.1:{port}: {e}"))?,
        );
        _fake = fake.clone();
        let to = opts
            .get("--to")
            .copied()
            .unwrap_or("+919876543210")
            .to_owned();
        Connect::Outbound { to, fake }
    } else {
        Connect::Webhook {
            path: opts
                .get("--path")
                .copied()
                .unwrap_or("/voicebot/connect")
                .to_owned(),
            secret: opts.get("--secret").map(|s| s.to_string()),
        }
    };
    let calls = num("--calls", 1)? as usize;
    let ramp = Duration::from_millis(num("--ramp", 1)? * 1000);
    let report = sim::run_load(&plan, calls.max(1), ramp);
    print!("{}", sim::report::summary(&report.calls, report.wall));
    if let (Some(path), Some(first)) = (opts.get("--record"), report.calls.first()) {
        let mut file = std::fs::File::create(path).map_err(|e| format!("--record {path}: {e}"))?;
        exotel_voicebot::media::audio::write_wav(&mut file, rate, 1, &first.bot_audio)
            .map_err(|e| format!("--record {path}: {e}"))?;
        println!("bot audio of the first call written to {path}");
    }
    Ok(report.clean_calls() == report.calls.len())
}
