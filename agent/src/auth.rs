//! The register message's credentials (SPEC "Agents"): agent id, API key, Unix timestamp in
//! seconds, a fresh nonce, and `HMAC-SHA256(secret, "{agent_id}:{timestamp}:{nonce}")` in hex
//! — what `orchestra_plugins::agent_auth` verifies on the gateway (the agent computes it with
//! `hmac`/`sha2` itself to keep the gateway's plugin stack out of its dependencies; the tests
//! check the two agree).

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The hex HMAC-SHA256 of `{agent_id}:{timestamp}:{nonce}` under `secret`.
pub fn sign(secret: &[u8], agent_id: &str, timestamp: i64, nonce: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("{agent_id}:{timestamp}:{nonce}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh nonce: 128 random bits in hex (32 visible ASCII characters).
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // hmac.new(b"key", b"The quick brown fox:1:jumps over the lazy dog", sha256), Python.
        assert_eq!(
            sign(b"key", "The quick brown fox", 1, "jumps over the lazy dog"),
            "6bfd06a74e6574742857395a9deec40ff6bd81e5677cd4674f27e7fb3d6db0cd"
        );
    }

    #[test]
    fn nonces_are_fresh_and_well_formed() {
        let a = nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, nonce());
    }
}
