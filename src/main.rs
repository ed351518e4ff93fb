//! The command line: `serve` (the default), `call <to>`, `simulate`, `test-bot`, `backup
//! <file>`, `--help`, `--version`. Parsed with lexopt: every subcommand has its own `--help` on
//! stdout, an unknown flag or a missing value is an error naming it.
//! Exit codes: 0 success, 1 failure at run time (Exotel refused, port taken, a call failed), 2
//! bad usage or configuration.

use exotel_voicebot::config::Config;

#[cfg(feature = "sim")]
#[path = "main/simulate.rs"]
mod simulate;
#[cfg(feature = "sim")]
use simulate::{fake_exotel, simulate, test_bot};

/// The simulator's commands in a build without them (`--no-default-features`).
#[cfg(not(feature = "sim"))]
fn without_simulator(command: &str) -> Outcome {
    Err((
        2,
        format!("{command}: this binary was built without the simulator (--no-default-features)"),
    ))
}
#[cfg(not(feature = "sim"))]
fn simulate(_: &mut lexopt::Parser) -> Outcome {
    without_simulator("simulate")
}
#[cfg(not(feature = "sim"))]
fn fake_exotel(_: &mut lexopt::Parser) -> Outcome {
    without_simulator("fake-exotel")
}
#[cfg(not(feature = "sim"))]
fn test_bot(_: &mut lexopt::Parser) -> Outcome {
    without_simulator("test-bot")
}
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
