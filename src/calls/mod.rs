//! Calls as our server knows them: their identifiers, the registry of live calls and media
//! tokens, and the placing of outbound calls (`POST /call`).

pub mod agents;
pub mod campaigns;
pub mod destination;
pub mod dnc;
pub mod handoffs;
pub mod ids;
pub mod log;
pub mod orphans;
pub mod phones;
pub mod place;
pub mod plans;
pub mod refusal;
pub mod registry;
pub mod rejects;
pub mod shared;
pub mod slots;
pub mod status;
pub mod upkeep;
pub mod watchdog;

pub use ids::{CallLogId, MediaToken, PhoneNumber};
pub use refusal::{Refusal, Refused};
pub use registry::Registry;
