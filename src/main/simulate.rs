//! The simulator's commands (`simulate`, `fake-exotel`, `test-bot`): Exotel's side of calls,
//! a fake Exotel API and a test bot, for trying a server without Exotel. Built with the `sim`
//! feature (a default one); the smallest boards' build leaves them out.

use super::*;

const SIMULATE_USAGE: &str = "\
usage: exotel-voicebot simulate [options]

Plays Exotel's side of calls against a running server, and checks that the echo bot's audio
came back (--no-echo-check for another bot). Exits 0 when every call was clean.

options:
  --server ADDR        the server (default 127.0.0.1:3000)
  --tls-ca FILE        the server speaks HTTPS and wss:// (TLS_CERT); trust this CA (PEM)
  --path PATH          connect webhook to ask (default /voicebot/connect)
  --secret S           WEBHOOK_SECRET for the webhook
  --url WS_URL         skip the webhook and open this media URL (MEDIA_SECRET, MEDIA_PORT)
  --outbound           POST /call instead; answers it with a fake Exotel on --exotel-port
  --exotel-port P      the fake Exotel's port (default 3002, beside a fake-exotel on 3001;
                       start the server with EXOTEL_API_BASE_URL=http://127.0.0.1:P and any
                       credentials)
  --to NUMBER          the number for --outbound (default +919876543210)
  --agent NAME         the call's agent (one of /agents), with --outbound
  --var NAME=VALUE     one of the call's variables (repeat it), with --outbound
  --wav FILE           caller audio (16-bit PCM WAV); default: a built-in voice-like signal
  --seconds S          length of the built-in signal (default 3)
  --rate HZ            sample rate of the built-in signal: 8000, 16000, 24000 (default 8000)
  --chunk-ms MS        caller chunk length (default 100)
  --dtmf KEYS          keys to press after the audio, e.g. 12# (# makes the echo bot hang up)
  --echo-delay-ms MS   the server's ECHO_DELAY_MS, to check the echo (default 400)
  --no-echo-check      check the protocol only, not that the audio came back
  --calls N            calls at once (default 1, at most 100000)
  --ramp S             seconds over which to start them (default 1)
  --record FILE        save what the bot sent (the first call) as WAV
  --passthru FORM      after the stream, ask the Passthru applet's URL as Exotel does and say
                       which branch the flow takes: nested (Stream[Status]=…), json (Stream={…}),
                       flat (no stream fields), or body (the JSON POST of the Passthru before
                       the stream)
  --passthru-path PATH the Passthru URL's path (default /api/v1/exotel/passthru)";

const FAKE_EXOTEL_USAGE: &str = "\
usage: exotel-voicebot fake-exotel [options]

Runs a fake Exotel API on 127.0.0.1:PORT that plays a telephone network, to try /call and
campaigns with no account (start the server with EXOTEL_API_BASE_URL=http://127.0.0.1:PORT and
any EXOTEL_API_KEY, EXOTEL_API_TOKEN, EXOTEL_SID and EXOTEL_CALLER_ID): every Calls/connect
gets its own CallSid, rings, talks, and ends with a status callback to the server; its
call-details API answers too.
No media is streamed: `simulate --url` plays the customer on a call's media URL.

options:
  --port P             its port (default 3001)
  --ring-ms MS         how long each call rings (default 1000)
  --talk-ms MS         how long an answered call lasts (default 5000)
  --busy NUMBER        a number that is always busy (repeatable)";

const TEST_BOT_USAGE: &str = "\
usage: exotel-voicebot test-bot [options]

Runs an upstream bot that speaks Exotel's protocol and echoes, on ws://127.0.0.1:PORT/bot,
for trying BOT=relay (BOT_URL=ws://127.0.0.1:3002/bot) and for bench/relay-latency.

options:
  --port P             its port (default 3002)
  --echo-delay-ms MS   how far behind the caller it echoes (default 400)";

pub(super) fn test_bot(parser: &mut lexopt::Parser) -> Outcome {
    let mut port = 3002u16;
    let mut delay = 400u32;
    let go = arguments(parser, "test-bot", TEST_BOT_USAGE, |p, arg| {
        match &arg {
            Arg::Flag(f) if f == "--port" => port = value(p, f)?,
            Arg::Flag(f) if f == "--echo-delay-ms" => delay = value(p, f)?,
            other => return Err(other.unexpected()),
        }
        Ok(())
    })?;
    if !go {
        return Ok(());
    }
    // Two descriptors a connection (its socket and the clone its close uses).
    exotel_voicebot::descriptors::prepare(8192);
    let bot = exotel_voicebot::sim::bot::TestBot::start_on(port, delay)
        .map_err(|e| (1, format!("test-bot on 127.0.0.1:{port}: {e}")))?;
    println!("test bot listening on {}", bot.url());
    loop {
        std::thread::park();
    }
}

pub(super) fn fake_exotel(parser: &mut lexopt::Parser) -> Outcome {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel, Network};
    let mut port = 3001u16;
    let mut network = Network {
        ring: std::time::Duration::from_millis(1000),
        talk: std::time::Duration::from_millis(5000),
        ..Network::default()
    };
    let go = arguments(parser, "fake-exotel", FAKE_EXOTEL_USAGE, |p, arg| {
        match &arg {
            Arg::Flag(f) if f == "--port" => port = value(p, f)?,
            Arg::Flag(f) if f == "--ring-ms" => {
                network.ring = std::time::Duration::from_millis(value(p, f)?)
            }
            Arg::Flag(f) if f == "--talk-ms" => {
                network.talk = std::time::Duration::from_millis(value(p, f)?)
            }
            Arg::Flag(f) if f == "--busy" => network.busy.push(value(p, f)?),
            other => return Err(other.unexpected()),
        }
        Ok(())
    })?;
    if !go {
        return Ok(());
    }
    let fake = FakeExotel::start_on(port, Behaviour::Network(network))
        .map_err(|e| (1, format!("fake-exotel on 127.0.0.1:{port}: {e}")))?;
    println!("fake Exotel listening on {}", fake.base_url());
    loop {
        std::thread::park();
    }
}

/// What `simulate` was asked.
struct SimulateArgs {
    server: String,
    tls_ca: Option<String>,
    path: String,
    secret: Option<String>,
    url: Option<String>,
    outbound: bool,
    exotel_port: u16,
    to: String,
    agent: Option<String>,
    variables: serde_json::Map<String, serde_json::Value>,
    wav: Option<String>,
    seconds: u32,
    rate: u32,
    chunk_ms: u32,
    dtmf: String,
    echo_delay_ms: u32,
    check_echo: bool,
    calls: usize,
    ramp_s: u64,
    record: Option<String>,
    passthru: Option<exotel_voicebot::sim::passthru::Form>,
    passthru_path: String,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        SimulateArgs {
            server: "127.0.0.1:3000".into(),
            tls_ca: None,
            path: "/voicebot/connect".into(),
            secret: None,
            url: None,
            outbound: false,
            exotel_port: 3002,
            to: "+919876543210".into(),
            agent: None,
            variables: serde_json::Map::new(),
            wav: None,
            seconds: 3,
            rate: 8000,
            chunk_ms: 100,
            dtmf: String::new(),
            echo_delay_ms: 400,
            check_echo: true,
            calls: 1,
            ramp_s: 1,
            record: None,
            passthru: None,
            passthru_path: "/api/v1/exotel/passthru".into(),
        }
    }
}

impl SimulateArgs {
    fn take(&mut self, p: &mut lexopt::Parser, arg: Arg) -> Result<(), String> {
        let flag = match arg {
            Arg::Flag(flag) => flag,
            value => return Err(value.unexpected()),
        };
        let f = flag.as_str();
        match f {
            "--server" => self.server = value(p, f)?,
            "--tls-ca" => self.tls_ca = Some(value(p, f)?),
            "--path" => self.path = value(p, f)?,
            "--secret" => self.secret = Some(value(p, f)?),
            "--url" => self.url = Some(value(p, f)?),
            "--outbound" => self.outbound = true,
            "--passthru" => {
                let form: String = value(p, f)?;
                self.passthru = Some(
                    exotel_voicebot::sim::passthru::Form::parse(&form)
                        .map_err(|e| format!("--passthru {e}"))?,
                )
            }
            "--passthru-path" => self.passthru_path = value(p, f)?,
            "--exotel-port" => self.exotel_port = value(p, f)?,
            "--to" => self.to = value(p, f)?,
            "--agent" => self.agent = Some(value(p, f)?),
            "--var" => {
                let pair: String = value(p, f)?;
                let (name, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--var {pair:?}: NAME=VALUE"))?;
                self.variables.insert(name.to_owned(), v.into());
            }
            "--wav" => self.wav = Some(value(p, f)?),
            "--seconds" => self.seconds = value(p, f)?,
            "--rate" => self.rate = value(p, f)?,
            "--chunk-ms" => self.chunk_ms = value(p, f)?,
            "--dtmf" => self.dtmf = value(p, f)?,
            "--echo-delay-ms" => self.echo_delay_ms = value(p, f)?,
            "--no-echo-check" => self.check_echo = false,
            "--calls" => self.calls = value(p, f)?,
            "--ramp" => self.ramp_s = value(p, f)?,
            "--record" => self.record = Some(value(p, f)?),
            _ => return Err(Arg::Flag(flag).unexpected()),
        }
        Ok(())
    }
}

pub(super) fn simulate(parser: &mut lexopt::Parser) -> Outcome {
    let mut args = SimulateArgs::default();
    let go = arguments(parser, "simulate", SIMULATE_USAGE, |p, arg| {
        args.take(p, arg)
    })?;
    if !go {
        return Ok(());
    }
    // As `serve` does: a load opens each call on a short-lived coroutine, and pooled stacks
    // spare each one a map, a guard page and an unmap.
    exotel_voicebot::reuse_connection_stacks();
    match simulate_with(&args) {
        Ok(true) => Ok(()),
        Ok(false) => Err((1, "simulate: not every call was clean".into())),
        Err(e) => Err((2, format!("simulate: {e}"))),
    }
}

/// The caller's audio: the WAV file, or the built-in signal.
fn caller_audio(args: &SimulateArgs) -> Result<(u32, Vec<i16>), String> {
    use exotel_voicebot::exotel::stream::SAMPLE_RATES;
    let Some(path) = &args.wav else {
        if !SAMPLE_RATES.contains(&args.rate) {
            return Err(format!("--rate {}: use 8000, 16000 or 24000", args.rate));
        }
        let audio = exotel_voicebot::media::audio::speech_like(args.rate, args.seconds * 1000, 1);
        return Ok((args.rate, audio));
    };
    let mut file = std::fs::File::open(path).map_err(|e| format!("--wav {path}: {e}"))?;
    let wav = exotel_voicebot::media::audio::read_wav(&mut file)
        .map_err(|e| format!("--wav {path}: {e}"))?;
    if !SAMPLE_RATES.contains(&wav.sample_rate) {
        return Err(format!(
            "--wav {path}: {} Hz; Exotel streams 8000, 16000 or 24000",
            wav.sample_rate
        ));
    }
    Ok((wav.sample_rate, wav.samples))
}

/// Runs the simulation; `Ok(true)` when every call was clean.
/// After the first call's stream: the Passthru request Exotel's flow would make, and the branch
/// the answer takes it down.
fn play_passthru(
    args: &SimulateArgs,
    plan: &exotel_voicebot::sim::CallPlan,
    form: exotel_voicebot::sim::passthru::Form,
    call: &exotel_voicebot::sim::CallReport,
) -> Result<(), String> {
    use exotel_voicebot::sim::passthru::{ask, Form};
    let disconnected_by = match call.ended_by {
        exotel_voicebot::sim::EndedBy::Server(_) => "bot",
        _ => "user",
    };
    let mut path = args.passthru_path.clone();
    if let Some(secret) = &args.secret {
        path.push_str(if path.contains('?') {
            "&secret="
        } else {
            "?secret="
        });
        exotel_voicebot::http::form::encode_into(&mut path, secret);
    }
    let target = exotel_voicebot::sim::client::Server {
        addr: plan.server,
        tls: plan.tls.clone(),
    };
    let branch = ask(
        &target,
        &path,
        form,
        &call.call_sid,
        &call.call_log_id,
        disconnected_by,
    )?;
    let answer: serde_json::Value = serde_json::from_str(&branch.body).unwrap_or_default();
    let flow = if form == Form::Body {
        "the flow goes on to the stream"
    } else if answer["handoff"] == true {
        "handoff: the flow hands the caller to a person"
    } else {
        "no handoff: the flow ends the call"
    };
    let reason = answer["reason"]
        .as_str()
        .map(|r| format!(" (reason {r})"))
        .unwrap_or_default();
    println!(
        "passthru ({}): {} {flow}{reason}",
        format!("{form:?}").to_lowercase(),
        branch.status
    );
    Ok(())
}

/// The most calls one `simulate` plays at once. Each holds two sockets and a coroutine; a larger
/// number (up to `usize::MAX` on the command line) made it panic allocating for them.
const MAX_SIMULATED_CALLS: usize = 100_000;

fn simulate_with(args: &SimulateArgs) -> Result<bool, String> {
    use exotel_voicebot::sim::{self, CallPlan, Connect};
    use std::sync::Arc;
    let server = server_addr(&args.server)?;
    if !args.outbound && (args.agent.is_some() || !args.variables.is_empty()) {
        return Err("--agent and --var name an outbound call's: add --outbound".into());
    }
    if !(1..=MAX_SIMULATED_CALLS).contains(&args.calls) {
        return Err(format!(
            "--calls {}: from 1 to {MAX_SIMULATED_CALLS}",
            args.calls
        ));
    }
    // A call's webhook request and its media socket, and a margin.
    exotel_voicebot::descriptors::prepare(64 + 2 * args.calls as u64);
    let (rate, audio) = caller_audio(args)?;
    let mut plan = CallPlan::new(server, audio);
    plan.sample_rate = rate;
    plan.chunk_ms = args.chunk_ms;
    plan.echo_delay_ms = args.echo_delay_ms;
    plan.dtmf = args.dtmf.clone();
    plan.check_echo = args.check_echo;
    plan.tls = args.tls_ca.as_deref().map(tls_roots).transpose()?;
    let _fake;
    plan.connect = if let Some(url) = &args.url {
        Connect::Url(url.clone())
    } else if args.outbound {
        let port = args.exotel_port;
        let behaviour = sim::fake_exotel::Behaviour::Accept {
            sid: "sim-call".into(),
        };
        let fake = Arc::new(
            sim::fake_exotel::FakeExotel::start_on(port, behaviour)
                .map_err(|e| format!("fake Exotel on 127.0.0.1:{port}: {e}"))?,
        );
        _fake = fake.clone();
        let mut call = serde_json::json!({ "to": args.to });
        if let Some(agent) = &args.agent {
            call["agent"] = agent.as_str().into();
        }
        if !args.variables.is_empty() {
            call["variables"] = args.variables.clone().into();
        }
        Connect::Outbound { call, fake }
    } else {
        Connect::Webhook {
            path: args.path.clone(),
            secret: args.secret.clone(),
        }
    };
    let ramp = std::time::Duration::from_secs(args.ramp_s);
    let report = sim::run_load(&plan, args.calls.max(1), ramp);
    print!("{}", sim::report::summary(&report.calls, report.wall));
    if let Some(first) = report.calls.first() {
        let bot = if args.url.is_some() {
            "not asked (with --url, simulate knows only the media socket)".to_owned()
        } else {
            let token = std::env::var("API_TOKEN").ok().filter(|t| !t.is_empty());
            sim::report::answered_by(&plan, first, token.as_deref())
        };
        println!("bot: {bot}");
    }
    if let (Some(path), Some(first)) = (&args.record, report.calls.first()) {
        let mut file = std::fs::File::create(path).map_err(|e| format!("--record {path}: {e}"))?;
        exotel_voicebot::media::audio::write_wav(&mut file, rate, 1, &first.bot_audio)
            .map_err(|e| format!("--record {path}: {e}"))?;
        println!("bot audio of the first call written to {path}");
    }
    if let (Some(form), Some(first)) = (args.passthru, report.calls.first()) {
        play_passthru(args, &plan, form, first)?;
    }
    Ok(report.clean_calls() == report.calls.len())
}
