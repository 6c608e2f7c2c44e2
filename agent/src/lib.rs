//! `orchestra-agent`: the agent of AI Orchestra's worker machines.
//!
//! It dials the gateway (QUIC, ALPN `orchestra-agent/1`, or WebSocket at `/agent/ws`), registers
//! with an HMAC-signed message, heartbeats with system information, runs the tasks the gateway
//! assigns as child processes from its tool table, and streams their output back as numbered
//! events that it holds — in memory, then on disk — until the gateway acks them, across
//! reconnects. The protocol is `proto/orchestra/agent/v1/agent.proto`; the config and flags are
//! in SPEC "Agents" and the README.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | the TOML file and flags, validated with file / key / value errors |
//! | [`supervisor`] | the process: reconnect loop with [`backoff`], signals, shutdown |
//! | [`session`] | one connection: register ([`auth`]), heartbeats ([`system`]), ping, assignments, resumes |
//! | [`transport`] | QUIC and WebSocket behind one stream interface; [`tls`] trust |
//! | [`tasks`] | the task table, each task's actor, process, output mapping and held events |

pub mod auth;
pub mod backoff;
pub mod config;
pub mod session;
pub mod supervisor;
pub mod system;
pub mod tasks;
pub mod tls;
pub mod transport;
