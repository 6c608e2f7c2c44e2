//! The agent protocol of Orchestra Gateway (`orchestra-agent/1`).
//!
//! Agents dial the gateway over QUIC (or WebSocket at `/agent/ws`) and exchange [`v1::Frame`]s:
//! register and heartbeats on a control stream, one stream per task for its assignment, output
//! events, acks, input and stop. The schema, with the rules of each stream, is
//! `proto/orchestra/agent/v1/agent.proto`; it is the contract for agents in any language.
//!
//! | item | what |
//! |---|---|
//! | [`v1`] | the generated message types |
//! | [`codec`] | length-delimited framing over any byte stream, with a size cap |
//! | [`ALPN`], [`PROTOCOL_VERSION`], [`MAX_FRAME`] | the constants both sides share |

pub mod codec;

/// Generated from `orchestra/agent/v1/agent.proto`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/orchestra.agent.v1.rs"));
}

/// The QUIC ALPN protocol id of the agent protocol.
pub const ALPN: &[u8] = b"orchestra-agent/1";

/// The protocol version sent in `Register` and `Registered`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest encoded frame either side accepts (without its length prefix).
pub const MAX_FRAME: usize = 1024 * 1024;

pub use codec::{decode_frame, encode_frame, FrameError, FrameReader};
