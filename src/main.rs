//! The command line: `serve` (the default), `call <to>`, `simulate`, `test-bot`, `backup
//! <file>`, `--help`, `--version`. Parsed with lexopt: every subcommand has its own `--help` on
//! stdout, an unknown flag or a missing value is an error naming it.
//! Exit codes: 0 success, 1 failure at run time (Exotel refused, port taken, a call failed), 2
//! bad usage or configuration.

use exotel_voicebot::config::Config;
use lexopt::prelude::*;
use std::process::ExitCode;

const USAGE: &str = "\
exotel-voicebot: the telephony edge between Exotel and a voice bot

usage:
  exotel-voicebot [serve]          run the server (PORT, default 3000)
  exotel-voicebot call <to>        place one call through the running server's POST /call
  exotel-voicebot campaign status <id>
                                   follow a campaign of the running server: a live progress bar
  exotel-voicebot simulate         play Exotel's side of calls against a server
  exotel-voicebot test-bot         run an upstream echo bot to try BOT=relay with
  exotel-voicebot fake-exotel      run a fake Exotel API (a network that rings and answers)
  exotel-voicebot backup <file>    copy the call log (DATA_DIR/calls.db) safely while serving
  exotel-voicebot --help | --version

`exotel-voicebot <command> --help` describes each command.
Configuration comes from the environment and a .env file in the working directory;
README.md lists every variable.";

const SERVE_USAGE: &str = "\
usage: exotel-voicebot [serve]

Runs the server on PORT (default 3000) until SIGTERM or SIGINT, which drain live calls for up
to SHUTDOWN_GRACE_S; SIGHUP reloads TLS_CERT/TLS_KEY. Configuration comes from the environment
and ./.env; README.md lists every variable.";

const CALL_USAGE: &str = "\
usage: exotel-voicebot call <to> [options]

Places one call through the running server's POST /call (so the call is logged, its status
callback is matched, and both Exotel flows work), and prints the server's answer.

options:
  --server ADDR        the server (default 127.0.0.1:$PORT, PORT default 3000)
  --call-log-id ID     your id for the call (default: one is generated)
  --tls-ca FILE        the server speaks HTTPS (TLS_CERT); trust this CA (PEM)

Sends API_TOKEN from the environment as its bearer token when set.";

const CAMPAIGN_USAGE: &str = "\
usage: exotel-voicebot campaign status <id> [options]

Follows a campaign of the running server (GET /campaigns/<id>): on a terminal a progress bar
that redraws in place (dialed, answered, failed, left, calls per minute, time to finish), else
one plain line per update. Exits 0 when the campaign is completed or canceled.

options:
  --server ADDR        the server (default 127.0.0.1:$PORT, PORT default 3000)
  --tls-ca FILE        the server speaks HTTPS (TLS_CERT); trust this CA (PEM)
  --interval-ms MS     how often to look (default 1000)
  --once               look once, print, and exit

Sends API_TOKEN from the environment as its bearer token when set.";

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

const BACKUP_USAGE: &str = "\
usage: exotel-voicebot backup <file>

Copies the call log, DATA_DIR/calls.db, to <file> with SQLite's online backup: a consistent
copy while the server runs and writes (copying the file with cp under WAL is not). <file> must
not exist yet. Restore by stopping the server and putting the copy at DATA_DIR/calls.db.";

/// What a command's run ended with: an exit code, with the message for stderr.
type Outcome = Result<(), (u8, String)>;

fn usage_error(command: &str, e: impl std::fmt::Display) -> (u8, String) {
    let help = match command {
        "" => "exotel-voicebot --help".to_owned(),
        c => format!("exotel-voicebot {c} --help"),
    };
    (2, format!("{e} (see {help})"))
}

fn main() -> ExitCode {
    // Everything this binary writes (the call log and its WAL, recordings, greetings, backups)
    // holds call data or tokens: readable by this user only, whatever the shell's umask.
    exotel_voicebot::keep_files_private();
    let mut parser = lexopt::Parser::from_env();
    let outcome = match parser.next() {
        Ok(None) => serve(&mut parser),
        Ok(Some(Value(command))) => match command.to_str() {
            Some("serve") => serve(&mut parser),
            Some("call") => call(&mut parser),
            Some("campaign") => campaign(&mut parser),
            Some("simulate") => simulate(&mut parser),
            Some("test-bot") => test_bot(&mut parser),
            Some("fake-exotel") => fake_exotel(&mut parser),
            Some("backup") => backup(&mut parser),
            Some("help") => print(USAGE),
            _ => Err(usage_error("", format!("unknown command {command:?}"))),
        },
        Ok(Some(Long("help") | Short('h'))) => print(USAGE),
        Ok(Some(Long("version") | Short('V'))) => {
            print(&format!("exotel-voicebot {}", env!("CARGO_PKG_VERSION")))
        }
        Ok(Some(arg)) => Err(usage_error("", arg.unexpected())),
        Err(e) => Err(usage_error("", e)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("exotel-voicebot: {message}");
            ExitCode::from(code)
        }
    }
}

/// "is the server running?", for an error that says nothing answered at all.
fn running_hint(error: &str) -> &'static str {
    if error.contains("refused") {
        " (is the server running?)"
    } else {
        ""
    }
}

fn print(text: &str) -> Outcome {
    println!("{text}");
    Ok(())
}

/// A flag's value, parsed; errors name the flag.
fn value<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String> {
    let raw = parser.value().map_err(|e| e.to_string())?;
    let text = raw
        .to_str()
        .ok_or_else(|| format!("{flag}: {raw:?} is not UTF-8"))?;
    text.parse()
        .map_err(|_| format!("{flag} {text:?} is not a valid value"))
}

/// One argument, owned, so that its flag's value can be read after it.
enum Arg {
    /// `--name` or `-n`, as typed.
    Flag(String),
    Value(std::ffi::OsString),
}

impl Arg {
    fn unexpected(&self) -> String {
        match self {
            Arg::Flag(flag) => format!("unknown option {flag}"),
            Arg::Value(v) => format!("unexpected argument {v:?}"),
        }
    }
}

/// Reads the command's arguments: `--help` prints `usage` and answers `false`; every other
/// argument goes to `each`.
fn arguments(
    parser: &mut lexopt::Parser,
    command: &str,
    usage: &str,
    mut each: impl FnMut(&mut lexopt::Parser, Arg) -> Result<(), String>,
) -> Result<bool, (u8, String)> {
    loop {
        let arg = match parser.next() {
            Ok(None) => return Ok(true),
            Ok(Some(Long("help") | Short('h'))) => {
                println!("{usage}");
                return Ok(false);
            }
            Ok(Some(Long(name))) => Arg::Flag(format!("--{name}")),
            Ok(Some(Short(c))) => Arg::Flag(format!("-{c}")),
            Ok(Some(Value(v))) => Arg::Value(v),
            Err(e) => return Err(usage_error(command, e)),
        };
        each(parser, arg).map_err(|e| usage_error(command, e))?;
    }
}

fn load_config() -> Result<Config, (u8, String)> {
    Config::from_env().map_err(|e| (2, format!("configuration error: {e}")))
}

fn serve(parser: &mut lexopt::Parser) -> Outcome {
    let go = arguments(parser, "serve", SERVE_USAGE, |_, arg| Err(arg.unexpected()))?;
    if !go {
        return Ok(());
    }
    exotel_voicebot::reuse_connection_stacks();
    let config = load_config()?;
    exotel_voicebot::log::init(&config.log);
    install_panic_log();
    exotel_voicebot::serve(config).map_err(|e| (1, format!("cannot serve: {e}")))
}

/// Panics as one log line each, like every other event.
fn install_panic_log() {
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
}

/// Trusts a CA file for `--tls-ca`.
fn tls_roots(path: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let roots = exotel_voicebot::tls::trust_anchors(std::path::Path::new(path))
        .map_err(|e| format!("--tls-ca {path}: {e}"))?;
    Ok(exotel_voicebot::tls::client_config(&roots))
}

fn server_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("--server {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--server {text:?} resolves to nothing"))
}

fn call(parser: &mut lexopt::Parser) -> Outcome {
    let mut to: Option<String> = None;
    let mut server: Option<String> = None;
    let mut call_log_id: Option<String> = None;
    let mut tls_ca: Option<String> = None;
    let go = arguments(parser, "call", CALL_USAGE, |p, arg| {
        match &arg {
            Arg::Flag(f) if f == "--server" => server = Some(value(p, f)?),
            Arg::Flag(f) if f == "--call-log-id" => call_log_id = Some(value(p, f)?),
            Arg::Flag(f) if f == "--tls-ca" => tls_ca = Some(value(p, f)?),
            Arg::Value(v) if to.is_none() => to = Some(v.to_string_lossy().into_owned()),
            other => return Err(other.unexpected()),
        }
        Ok(())
    })?;
    if !go {
        return Ok(());
    }
    let to = to.ok_or_else(|| usage_error("call", "the number to call is missing"))?;
    let config = load_config()?;
    let server = match server {
        Some(s) => server_addr(&s),
        None => server_addr(&format!("127.0.0.1:{}", config.port)),
    }
    .map_err(|e| usage_error("call", e))?;
    let tls = tls_ca
        .map(|path| tls_roots(&path))
        .transpose()
        .map_err(|e| usage_error("call", e))?;
    let target = exotel_voicebot::sim::client::Server { addr: server, tls };
    let mut body = serde_json::json!({ "to": to });
    if let Some(id) = call_log_id {
        body["callLogId"] = id.into();
    }
    let (status, answer) = target
        .fetch_with_token(
            "POST",
            "/call",
            Some(&body.to_string()),
            config.access.api_token.as_deref(),
        )
        .map_err(|e| (1, format!("{}: {e}{}", target.base_url(), running_hint(&e))))?;
    let answer = String::from_utf8_lossy(&answer);
    println!("{}", answer.trim_end());
    match status {
        200..=299 => Ok(()),
        400..=499 => Err((2, format!("the server answered {status}"))),
        _ => Err((1, format!("the server answered {status}"))),
    }
}

/// `campaign status <id>`: polls the campaign and draws its progress until it ends.
/// The campaign `campaign status <id>` names.
fn campaign_id(words: &[String]) -> Result<String, (u8, String)> {
    match words {
        [status, id] if status == "status" => Ok(id.clone()),
        [other, ..] if other != "status" => Err(usage_error(
            "campaign",
            format!("unknown subcommand {other:?} (status)"),
        )),
        _ => Err(usage_error("campaign", "usage: campaign status <id>")),
    }
}

fn campaign(parser: &mut lexopt::Parser) -> Outcome {
    use exotel_voicebot::calls::campaigns::progress::{bar, line, Progress, Rate};
    use std::io::{IsTerminal as _, Write as _};
    let mut words: Vec<String> = Vec::new();
    let mut server: Option<String> = None;
    let mut tls_ca: Option<String> = None;
    let mut interval_ms = 1000u64;
    let mut once = false;
    let go = arguments(parser, "campaign", CAMPAIGN_USAGE, |p, arg| {
        match &arg {
            Arg::Flag(f) if f == "--server" => server = Some(value(p, f)?),
            Arg::Flag(f) if f == "--tls-ca" => tls_ca = Some(value(p, f)?),
            Arg::Flag(f) if f == "--interval-ms" => interval_ms = value(p, f)?,
            Arg::Flag(f) if f == "--once" => once = true,
            Arg::Value(v) if words.len() < 2 => words.push(v.to_string_lossy().into_owned()),
            other => return Err(other.unexpected()),
        }
        Ok(())
    })?;
    if !go {
        return Ok(());
    }
    let id = campaign_id(&words)?;
    let config = load_config()?;
    let server = match server {
        Some(s) => server_addr(&s),
        None => server_addr(&format!("127.0.0.1:{}", config.port)),
    }
    .map_err(|e| usage_error("campaign", e))?;
    let tls = tls_ca
        .map(|path| tls_roots(&path))
        .transpose()
        .map_err(|e| usage_error("campaign", e))?;
    let target = exotel_voicebot::sim::client::Server { addr: server, tls };
    let mut path = String::from("/campaigns/");
    exotel_voicebot::http::form::encode_into(&mut path, &id);
    let terminal = std::io::stdout().is_terminal();
    let mut rate = Rate::default();
    let mut last_line = String::new();
    loop {
        let (status, answer) = target
            .fetch_with_token("GET", &path, None, config.access.api_token.as_deref())
            .map_err(|e| (1, format!("{}: {e}{}", target.base_url(), running_hint(&e))))?;
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        if status != 200 {
            let detail = answer["detail"].as_str().unwrap_or("");
            return Err((
                if status == 404 { 2 } else { 1 },
                format!("the server answered {status}: {detail}"),
            ));
        }
        let progress = Progress::from_answer(&answer);
        let per_minute = rate.note(std::time::Instant::now(), progress.dialed);
        let mut out = std::io::stdout().lock();
        if terminal {
            // Back to the line's start, draw, clear what a longer line left.
            let _ = write!(out, "\r{}\x1b[K", bar(&progress, per_minute, 30));
        } else {
            let text = line(&progress, per_minute);
            if text != last_line {
                let _ = writeln!(out, "{text}");
                last_line = text;
            }
        }
        let _ = out.flush();
        if progress.finished() || once {
            if terminal {
                let _ = writeln!(out);
            }
            return Ok(());
        }
        drop(out);
        std::thread::sleep(std::time::Duration::from_millis(interval_ms.max(50)));
    }
}

fn test_bot(parser: &mut lexopt::Parser) -> Outcome {
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

fn fake_exotel(parser: &mut lexopt::Parser) -> Outcome {
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

fn backup(parser: &mut lexopt::Parser) -> Outcome {
    let mut file: Option<std::path::PathBuf> = None;
    let go = arguments(parser, "backup", BACKUP_USAGE, |_, arg| {
        match arg {
            Arg::Value(v) if file.is_none() => file = Some(v.into()),
            other => return Err(other.unexpected()),
        }
        Ok(())
    })?;
    if !go {
        return Ok(());
    }
    let file = file.ok_or_else(|| usage_error("backup", "the file to write is missing"))?;
    let config = load_config()?;
    let Some(source) = config.database.sqlite_path().map(ToOwned::to_owned) else {
        return Err((
            2,
            "backup: the stored state is in PostgreSQL (DATABASE_URL); back it up with pg_dump"
                .into(),
        ));
    };
    let copied = exotel_voicebot::calls::upkeep::backup(&source, &file).map_err(|e| {
        (
            1,
            format!("backup of {} to {}: {e}", source.display(), file.display()),
        )
    })?;
    println!(
        "{} calls from {} backed up to {}",
        copied,
        source.display(),
        file.display()
    );
    Ok(())
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

fn simulate(parser: &mut lexopt::Parser) -> Outcome {
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
