//! The simulated Exotel: plays Exotel's side of calls against a running server over real HTTP
//! and WebSocket, for `exotel-voicebot simulate`, the tests and the load tool. It gets a media
//! URL the way Exotel would (the connect webhook, or `POST /call` answered by a
//! [`fake_exotel::FakeExotel`]), streams audio at real-time pace in Exotel-sized chunks, echoes
//! marks when their audio would have been played, and reports what came back.
//!
//! [`bot::TestBot`] is the other end of a relayed call: an upstream bot that speaks Exotel's
//! protocol; [`twilio_bot::TwilioBot`] one that speaks Twilio Media Streams, and
//! [`realtime_service::FakeRealtime`] a speech-to-speech service.
//!
//! A load opens each call on a may coroutine and streams it on one event loop ([`streams`]; a
//! TLS load streams on the coroutines); it talks to loopback addresses only. [`wire`] is the
//! in-memory socket for driving a session without one.

#[cfg(feature = "sim")]
pub mod bot;
#[cfg(feature = "sim")]
pub mod caller;
pub mod client;
#[cfg(feature = "sim")]
pub mod fake_exotel;
#[cfg(feature = "sim")]
pub mod passthru;
#[cfg(feature = "sim")]
pub mod realtime_service;
#[cfg(feature = "sim")]
pub mod report;
#[cfg(feature = "sim")]
pub mod streams;
#[cfg(feature = "sim")]
pub mod twilio_bot;
#[cfg(feature = "sim")]
pub mod wire;

#[cfg(feature = "sim")]
pub use caller::{run_call, CallPlan, CallReport, Connect, EndedBy, Event};
#[cfg(feature = "sim")]
pub use report::{run_load, LoadReport};
