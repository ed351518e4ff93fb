//! Most of the end-to-end tests, as one test binary: one link instead of twenty, and their
//! tests share the runner's threads. Each module is the file of the same name and says what it
//! proves; all of them start the real binary on loopback (`support`).
//!
//! In binaries of their own, beside this one: the allocation counters (`alloc`, `alloc_relay`:
//! a global allocator), the tests that need the machine to themselves (`chaos`, `load`,
//! `campaigns`, `hardening`'s uploads), the in-process library servers (`handoff`,
//! `http_library`, `library_bot`: may's process-wide settings), and the system ones (`deploy`,
//! `disk_faults`).

#[path = "../support/mod.rs"]
mod support;

mod agents;
mod call;
mod call_log;
mod capacity;
mod cli;
mod console;
mod dnc;
mod events;
mod fuzz_regressions;
mod guards;
mod http_edges;
mod logs;
mod media;
mod metrics;
mod odd_frames;
mod openapi;
mod phones;
mod readme;
mod realtime;
mod realtime_agents;
mod recording;
mod relay;
mod shutdown;
mod tls;
mod twilio;
mod webhook;
