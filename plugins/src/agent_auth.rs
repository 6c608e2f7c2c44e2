//! Agent authentication for the register message (SPEC "Agents"): a library for the agent hub,
//! not a route plugin.
//!
//! **Keys file** (`[agents] keys_file`), TOML, SPEC's format:
//! ```toml
//! [[agent]]
//! id = "worker-1"
//! api_key = "ak_worker1"
//! secret = "at least 32 bytes of secret for HMAC-SHA256"
//! ```
//! Agent ids are 1–128 visible ASCII characters without `:` and appear once; `api_key` is
//! non-empty; `secret` has at least [`MIN_SECRET_LEN`] bytes (its UTF-8 bytes are the HMAC key).
//! Unknown keys are errors; every error names the file, the entry (`agent[2]`) and the key.
//! A running verifier takes new keys with [`AgentVerifier::set_keys`] (a reload) and keeps its
//! nonce cache, so a reload never re-opens a replay window.
//!
//! **What the agent sends**: its id, its API key, `timestamp` (Unix time in **seconds**), a
//! `nonce` (1–128 visible ASCII characters, unique per register) and
//! `signature = HMAC-SHA256(secret, "{agent_id}:{timestamp}:{nonce}")` (timestamp in decimal),
//! encoded as **hex** (64 characters, either case) or **base64** (standard or URL-safe alphabet,
//! padding optional). [`sign`] produces the hex form.
//!
//! **Checks**, in order (the first failure is the answer):
//! 1. well-formed fields → else [`AuthError::Malformed`];
//! 2. the agent id is in the keys file → [`AuthError::UnknownAgent`];
//! 3. the API key matches (constant-time) → [`AuthError::BadApiKey`];
//! 4. `|now - timestamp| <= window` (default 5 minutes) → [`AuthError::Stale`];
//! 5. the signature matches (constant-time, `hmac`'s `verify_slice`) → [`AuthError::BadSignature`];
//! 6. the `(agent, nonce)` pair was not seen before → [`AuthError::Replayed`].
//!
//! Nonces are remembered in a `moka` cache only after a valid signature, so unauthenticated
//! traffic cannot fill it. An entry lives `2 × window`: a timestamp may be up to `window` in the
//! future and stays acceptable until `window` after it, so a nonce must outlive the moment it is
//! first seen by up to twice the window. The cache is bounded (default 1,000,000 nonces).
//! Every error maps to the platform code `AUTH_001` ([`AuthError::code`]).

mod keys;

pub use keys::{valid_agent_id, AgentKeys, KeysFileError, MAX_AGENT_ID_LEN, MIN_SECRET_LEN};

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Default accepted clock difference between agent and gateway.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Default bound of the nonce replay cache.
pub const DEFAULT_MAX_NONCES: u64 = 1_000_000;
/// Longest accepted nonce.
pub const MAX_NONCE_LEN: usize = 128;

/// Why an agent was not authenticated. Every variant maps to `AUTH_001`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The agent id is not in the keys file.
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// The API key does not match the agent's.
    #[error("API key does not match")]
    BadApiKey,
    /// The HMAC signature does not match.
    #[error("signature does not match")]
    BadSignature,
    /// The timestamp is outside the accepted window.
    #[error("timestamp {timestamp} is {skew_secs} s away from the gateway clock (window {window_secs} s)")]
    Stale {
        /// The timestamp sent.
        timestamp: i64,
        /// `|now - timestamp|` in seconds.
        skew_secs: u64,
        /// The accepted window in seconds.
        window_secs: u64,
    },
    /// The nonce was already used by this agent within the window.
    #[error("nonce already used")]
    Replayed,
    /// A field is missing or badly formed.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
}

impl AuthError {
    /// The platform error code (always `AUTH_001`).
    pub fn code(&self) -> &'static str {
        "AUTH_001"
    }
}

/// What an agent presents in its register message.
#[derive(Debug, Clone, Copy)]
pub struct AgentCredentials<'a> {
    /// The agent id.
    pub agent_id: &'a str,
    /// The agent's API key.
    pub api_key: &'a str,
    /// Unix time in seconds, as signed.
    pub timestamp: i64,
    /// Single-use value.
    pub nonce: &'a str,
    /// HMAC-SHA256 in hex or base64.
    pub signature: &'a str,
}

/// The message an agent signs: `agent_id:timestamp:nonce`.
pub fn signing_input(agent_id: &str, timestamp: i64, nonce: &str) -> String {
    format!("{agent_id}:{timestamp}:{nonce}")
}

/// The hex signature of a register (what an agent sends).
pub fn sign(secret: &[u8], agent_id: &str, timestamp: i64, nonce: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(signing_input(agent_id, timestamp, nonce).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A source of Unix time in seconds (injected in tests).
pub type UnixClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as a [`UnixClock`].
pub fn system_clock() -> UnixClock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// Verifies agent credentials (see the module doc). Shared by all connections.
pub struct AgentVerifier {
    keys: ArcSwap<AgentKeys>,
    window: Duration,
    nonces: moka::sync::Cache<(String, String), ()>,
    clock: UnixClock,
}

impl fmt::Debug for AgentVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentVerifier")
            .field("keys", &**self.keys.load())
            .field("window", &self.window)
            .field("nonces", &self.nonces.entry_count())
            .finish()
    }
}

impl AgentVerifier {
    /// A verifier with the default window, nonce bound and the system clock.
    pub fn new(keys: AgentKeys) -> Self {
        Self::with(keys, DEFAULT_WINDOW, DEFAULT_MAX_NONCES, system_clock())
    }

    /// A verifier with an explicit window, nonce cache bound and clock.
    pub fn with(keys: AgentKeys, window: Duration, max_nonces: u64, clock: UnixClock) -> Self {
        let nonces = moka::sync::Cache::builder()
            .max_capacity(max_nonces)
            .time_to_live(window.saturating_mul(2).max(Duration::from_secs(1)))
            .build();
        AgentVerifier {
            keys: ArcSwap::from_pointee(keys),
            window,
            nonces,
            clock,
        }
    }

    /// Replaces the keys (a reload); the nonce cache is kept.
    pub fn set_keys(&self, keys: AgentKeys) {
        self.keys.store(Arc::new(keys));
    }

    /// True when `agent_id` is in the current keys (a removed agent is disconnected on reload).
    pub fn knows(&self, agent_id: &str) -> bool {
        self.keys.load().contains(agent_id)
    }

    /// Checks `creds`; on success the nonce is consumed.
    pub fn verify(&self, creds: &AgentCredentials<'_>) -> Result<(), AuthError> {
        if !valid_agent_id(creds.agent_id) {
            return Err(AuthError::Malformed("agent id"));
        }
        if creds.nonce.is_empty()
            || creds.nonce.len() > MAX_NONCE_LEN
            || !creds.nonce.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AuthError::Malformed("nonce"));
        }
        let signature =
            decode_signature(creds.signature).ok_or(AuthError::Malformed("signature"))?;
        let keys = self.keys.load();
        let key = keys
            .agents
            .get(creds.agent_id)
            .ok_or_else(|| AuthError::UnknownAgent(creds.agent_id.to_string()))?;
        if !bool::from(key.api_key.as_slice().ct_eq(creds.api_key.as_bytes())) {
            return Err(AuthError::BadApiKey);
        }
        let skew = (self.clock)().abs_diff(creds.timestamp);
        if skew > self.window.as_secs() {
            return Err(AuthError::Stale {
                timestamp: creds.timestamp,
                skew_secs: skew,
                window_secs: self.window.as_secs(),
            });
        }
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key.secret)
            .map_err(|_| AuthError::BadSignature)?;
        mac.update(signing_input(creds.agent_id, creds.timestamp, creds.nonce).as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        let entry = self
            .nonces
            .entry((creds.agent_id.to_string(), creds.nonce.to_string()))
            .or_insert(());
        if entry.is_fresh() {
            Ok(())
        } else {
            Err(AuthError::Replayed)
        }
    }
}

/// Hex (64 characters) or base64 (standard or URL-safe, padded or not) → 32 bytes.
fn decode_signature(s: &str) -> Option<Vec<u8>> {
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).ok()?
    } else {
        [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(s).ok())?
    };
    (bytes.len() == 32).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    const S1: &[u8] = b"s3cret-1-s3cret-1-s3cret-1-s3cret-1";
    const S2: &[u8] = b"s3cret-2-s3cret-2-s3cret-2-s3cret-2";
    const KEYS: &str = keys::TEST_KEYS;
    const NOW: i64 = 1_700_000_000;

    fn verifier() -> (AgentVerifier, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(NOW));
        let clock = Arc::clone(&now);
        let v = AgentVerifier::with(
            AgentKeys::from_toml(KEYS).expect("keys"),
            DEFAULT_WINDOW,
            1000,
            Arc::new(move || clock.load(Ordering::Relaxed)),
        );
        (v, now)
    }

    fn creds<'a>(sig: &'a str, ts: i64, nonce: &'a str) -> AgentCredentials<'a> {
        AgentCredentials {
            agent_id: "worker-1",
            api_key: "ak-1",
            timestamp: ts,
            nonce,
            signature: sig,
        }
    }

    #[test]
    fn valid_hex_and_base64_signatures() {
        let (v, _) = verifier();
        let sig = sign(S1, "worker-1", NOW, "n-1");
        assert_eq!(sig.len(), 64);
        v.verify(&creds(&sig, NOW, "n-1")).expect("hex");
        let upper = sign(S1, "worker-1", NOW, "n-2").to_uppercase();
        v.verify(&creds(&upper, NOW, "n-2")).expect("upper hex");
        let raw = hex::decode(sign(S1, "worker-1", NOW, "n-3")).expect("hex");
        v.verify(&creds(&STANDARD.encode(&raw), NOW, "n-3"))
            .expect("base64");
        let raw = hex::decode(sign(S1, "worker-1", NOW, "n-4")).expect("hex");
        v.verify(&creds(&URL_SAFE_NO_PAD.encode(&raw), NOW, "n-4"))
            .expect("base64url");
    }

    #[test]
    fn stale_in_both_directions() {
        let (v, now) = verifier();
        let old = NOW - 301;
        let sig = sign(S1, "worker-1", old, "n");
        assert!(matches!(
            v.verify(&creds(&sig, old, "n")),
            Err(AuthError::Stale { skew_secs: 301, .. })
        ));
        let future = NOW + 301;
        let sig = sign(S1, "worker-1", future, "n");
        assert!(matches!(
            v.verify(&creds(&sig, future, "n")),
            Err(AuthError::Stale { .. })
        ));
        // Exactly at the window edge is accepted; the injected clock moves the edge.
        let edge = NOW - 300;
        let sig = sign(S1, "worker-1", edge, "edge");
        v.verify(&creds(&sig, edge, "edge")).expect("edge");
        now.store(NOW + 600, Ordering::Relaxed);
        let sig = sign(S1, "worker-1", NOW + 301, "later");
        v.verify(&creds(&sig, NOW + 301, "later"))
            .expect("clock moved");
    }

    #[test]
    fn replayed_nonce() {
        let (v, _) = verifier();
        let sig = sign(S1, "worker-1", NOW, "once");
        v.verify(&creds(&sig, NOW, "once")).expect("first");
        assert_eq!(
            v.verify(&creds(&sig, NOW, "once")),
            Err(AuthError::Replayed)
        );
        // Same nonce for another agent is not a replay.
        let sig2 = sign(S2, "worker-2", NOW, "once");
        let c2 = AgentCredentials {
            agent_id: "worker-2",
            api_key: "ak-2",
            ..creds(&sig2, NOW, "once")
        };
        v.verify(&c2).expect("other agent");
        // A failed signature does not burn the nonce.
        let bad = sign(b"wrong", "worker-1", NOW, "fresh");
        assert_eq!(
            v.verify(&creds(&bad, NOW, "fresh")),
            Err(AuthError::BadSignature)
        );
        let good = sign(S1, "worker-1", NOW, "fresh");
        v.verify(&creds(&good, NOW, "fresh"))
            .expect("nonce still unused");
    }

    #[test]
    fn wrong_secret_api_key_unknown_agent_and_malformed() {
        let (v, _) = verifier();
        let sig = sign(S2, "worker-1", NOW, "n");
        assert_eq!(
            v.verify(&creds(&sig, NOW, "n")),
            Err(AuthError::BadSignature)
        );
        // Signature over another timestamp than the one sent.
        let sig = sign(S1, "worker-1", NOW - 1, "n");
        assert_eq!(
            v.verify(&creds(&sig, NOW, "n")),
            Err(AuthError::BadSignature)
        );
        let sig = sign(S1, "worker-1", NOW, "n");
        let wrong_key = AgentCredentials {
            api_key: "ak-2",
            ..creds(&sig, NOW, "n")
        };
        assert_eq!(v.verify(&wrong_key), Err(AuthError::BadApiKey));
        let unknown = AgentCredentials {
            agent_id: "ghost",
            ..creds(&sig, NOW, "n")
        };
        assert_eq!(
            v.verify(&unknown),
            Err(AuthError::UnknownAgent("ghost".into()))
        );
        assert_eq!(
            v.verify(&creds("zz", NOW, "n")),
            Err(AuthError::Malformed("signature"))
        );
        assert_eq!(
            v.verify(&creds(&sig, NOW, "")),
            Err(AuthError::Malformed("nonce"))
        );
        assert_eq!(
            v.verify(&creds(&sig, NOW, "a b")),
            Err(AuthError::Malformed("nonce"))
        );
        assert_eq!(AuthError::BadApiKey.code(), "AUTH_001");
    }

    #[test]
    fn reload_keeps_nonces_and_drops_removed_agents() {
        let (v, _) = verifier();
        let sig = sign(S1, "worker-1", NOW, "n-1");
        v.verify(&creds(&sig, NOW, "n-1")).expect("first");
        v.set_keys(AgentKeys::from_toml(KEYS).expect("keys"));
        assert_eq!(v.verify(&creds(&sig, NOW, "n-1")), Err(AuthError::Replayed));
        let only_two = KEYS.split("[[agent]]").nth(2).expect("second entry");
        v.set_keys(AgentKeys::from_toml(&format!("[[agent]]{only_two}")).expect("keys"));
        assert!(!v.knows("worker-1") && v.knows("worker-2"));
        let sig = sign(S1, "worker-1", NOW, "n-2");
        assert_eq!(
            v.verify(&creds(&sig, NOW, "n-2")),
            Err(AuthError::UnknownAgent("worker-1".into()))
        );
    }
}
