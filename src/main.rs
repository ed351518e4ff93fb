//! The command line: `serve` (the default), `call <to>`, `--help`, `--version`.
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
  exotel-voicebot --help | --version

Configuration comes from the environment and a .env file in the working directory;
README.md lists every variable.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => serve(),
        ["call", rest @ ..] => call(rest),
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
        exotel_voicebot::error!("panic", at = location, detail = info);
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
