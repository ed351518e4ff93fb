//! Everything that speaks Exotel's formats: the REST client that places calls, the thread pool it
//! runs on, and the connect webhook. Types here mirror `docs/exotel.md`.

pub mod client;
pub mod passthru;
pub mod pool;
pub mod stream;
pub mod webhook;

pub use client::{
    CallDetails, CallOptions, CallTarget, ConnectCall, ExotelClient, ExotelError, PlacedCall,
};
pub use pool::{ApiPool, PoolError};
