//! The media path's WebSocket (RFC 6455), server side, after the handshake: [`frame`] reads a
//! client's frame heads and writes ours as plain values, and [`server`] runs one socket's
//! frames, messages, pings and closing handshake over any `Read + Write`.
//!
//! Why not tungstenite's `WebSocket` here, which the relay's client and the simulator still
//! use: it zero-fills its read buffer before every read, and sends a message only as a value it
//! checks for UTF-8 again; on the media path those were a third of a caller frame's
//! instructions (docs/PERFORMANCE.md, "The frame at its floor"). This one reads into a buffer
//! zero-filled once and lets the Exotel encoder write a frame's payload straight into the
//! output. The handshake stays where it is (`media::handshake`, or tungstenite's on
//! `MEDIA_PORT`). Owns no socket options and knows nothing of Exotel.

pub mod frame;
pub mod server;

pub use server::{text, Error, Incoming, ServerSocket};
