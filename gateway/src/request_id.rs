//! Request identity: `x-request-id` and W3C trace context (`traceparent`).
//!
//! - A client's `x-request-id` (visible ASCII, at most 128 bytes) is kept; otherwise the request id
//!   is the trace id of the request's trace, so logs and traces share one key.
//! - A valid incoming `traceparent` keeps its trace id and flags and gets a new parent id (the
//!   gateway is a hop of the trace); an absent or invalid one starts a new sampled trace.
//!
//! Ids come from a per-thread SplitMix64 generator seeded from the OS-randomized hasher keys: no
//! lock, no syscall per request.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

/// Header carrying the request id.
pub const X_REQUEST_ID: &str = "x-request-id";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// [`X_REQUEST_ID`] as a header name, built at compile time (no per-request validation).
pub const X_REQUEST_ID_NAME: http::HeaderName = http::HeaderName::from_static(X_REQUEST_ID);
/// [`TRACEPARENT`] as a header name, built at compile time.
pub const TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// A non-cryptographic random u64 (SplitMix64).
fn next_u64() -> u64 {
    RNG.with(|s| {
        let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn nonzero_u64() -> u64 {
    loop {
        let v = next_u64();
        if v != 0 {
            return v;
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], v: u64) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// The identity of one request.
#[derive(Debug, Clone)]
pub struct RequestIdentity {
    /// Value of `x-request-id` sent upstream and back to the client.
    pub request_id: HeaderValue,
    /// Value of `traceparent` sent upstream.
    pub traceparent: HeaderValue,
}

impl RequestIdentity {
    /// Derives the identity from the client's headers, generating what is absent or invalid.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // "00-" 32 hex trace id "-" 16 hex parent id "-" 2 hex flags = 55 bytes
        let mut tp = [0u8; 55];
        tp[..3].copy_from_slice(b"00-");
        tp[35] = b'-';
        tp[52] = b'-';
        match headers
            .get(TRACEPARENT_NAME)
            .and_then(|v| valid_traceparent(v.as_bytes()))
        {
            Some((trace, flags)) => {
                tp[3..35].copy_from_slice(trace);
                tp[53..55].copy_from_slice(flags);
            }
            None => {
                put_hex(&mut tp[3..19], nonzero_u64());
                put_hex(&mut tp[19..35], next_u64());
                tp[53..55].copy_from_slice(b"01");
            }
        }
        put_hex(&mut tp[36..52], nonzero_u64());
        // One shared buffer for both values: a generated request id is the trace id inside it,
        // and every later copy of either value (upstream headers, response, access log) is a
        // reference count, not an allocation.
        let shared = Bytes::from_owner(tp);
        let traceparent =
            HeaderValue::from_maybe_shared(shared.clone()).unwrap_or(HeaderValue::from_static(""));
        let request_id = headers
            .get(X_REQUEST_ID_NAME)
            .filter(|v| valid_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_maybe_shared(shared.slice(3..35))
                    .unwrap_or(HeaderValue::from_static(""))
            });
        RequestIdentity {
            request_id,
            traceparent,
        }
    }

    /// The request id as text (always visible ASCII).
    pub fn request_id_str(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }
}

/// `value` marked sensitive, which HTTP/2's header compression (HPACK) sends as a literal
/// "never indexed" field instead of adding it to the connection's dynamic table.
///
/// For the identity headers: a value that is new on every request would take a table entry per
/// request, evict the entries that do repeat (`content-type`, `server`, ...), and cost the
/// encoder a walk and a compare over every earlier entry of the same name (the `x-request-id`
/// of each response on an HTTP/2 connection: 2,230 instructions per request net, see
/// `bench/RESULTS.md`). The value itself and the HTTP/1.1 and HTTP/3 wire forms do not change.
pub fn never_indexed(value: &HeaderValue) -> HeaderValue {
    let mut value = value.clone();
    value.set_sensitive(true);
    value
}

fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| (0x21..0x7f).contains(b))
}

/// Returns (trace id, flags) of a valid version-00 `traceparent`.
fn valid_traceparent(v: &[u8]) -> Option<(&[u8], &[u8])> {
    if v.len() != 55 || &v[..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let is_hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (trace, parent, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    let all_zero = |s: &[u8]| s.iter().all(|b| *b == b'0');
    (is_hex(trace) && is_hex(parent) && is_hex(flags) && !all_zero(trace) && !all_zero(parent))
        .then_some((trace, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_valid_ids() {
        let id = RequestIdentity::from_headers(&HeaderMap::new());
        let tp = id.traceparent.to_str().unwrap();
        assert!(valid_traceparent(tp.as_bytes()).is_some(), "{tp}");
        assert_eq!(id.request_id_str(), &tp[3..35]);
        let other = RequestIdentity::from_headers(&HeaderMap::new());
        assert_ne!(other.request_id, id.request_id);
    }

    #[test]
    fn keeps_client_values() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, HeaderValue::from_static(incoming));
        let id = RequestIdentity::from_headers(&h);
        assert_eq!(id.request_id_str(), "abc-123");
        let tp = id.traceparent.to_str().unwrap();
        assert_eq!(&tp[..36], &incoming[..36], "trace id kept");
        assert_ne!(&tp[36..52], &incoming[36..52], "new parent id");
        assert_eq!(&tp[53..], "01");
    }

    #[test]
    fn replaces_invalid_values() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        h.insert(TRACEPARENT, HeaderValue::from_static("00-zz-yy-01"));
        let id = RequestIdentity::from_headers(&h);
        assert_ne!(id.request_id_str(), "has space");
        assert!(valid_traceparent(id.traceparent.as_bytes()).is_some());
    }
}
