//! A small client of the gateway's realtime channel (`/ws`), shared by the `task` and
//! `fanout` modes: the token (given, or an HS256 development token minted from a secret file),
//! JSON messages, and waiting for a reply.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::ws::{open, WsConn};
use crate::cli::RealtimeAuthArgs;
use crate::net::Connector;

/// An HS256 JWT for `sub`, valid for an hour, signed with `secret`.
pub fn mint_hs256(secret: &[u8], sub: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64.encode(json!({"sub": sub, "iat": now, "exp": now + 3600}).to_string());
    let signing = format!("{head}.{claims}");
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(signing.as_bytes());
    format!("{signing}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// The `Authorization` header for `auth` (none when neither a token nor a secret is given).
pub fn auth_headers(auth: &RealtimeAuthArgs) -> Result<HeaderMap, String> {
    let token = match (&auth.token, &auth.jwt_secret_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(mint_hs256(&read_secret(path)?, &auth.sub)),
        (None, None) => None,
    };
    let mut h = HeaderMap::new();
    if let Some(t) = token {
        let v = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| "the token is not a valid header value".to_string())?;
        h.insert(http::header::AUTHORIZATION, v);
    }
    Ok(h)
}

fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--jwt-secret-file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

/// One `/ws` connection.
pub struct RtClient {
    ws: WsConn,
    next_id: u64,
}

impl RtClient {
    /// Connects with `headers`.
    pub async fn connect(
        connector: &Connector,
        url: &str,
        headers: &HeaderMap,
    ) -> Result<RtClient, String> {
        let ws = open(connector, url, headers).await.map_err(|e| {
            format!("{url}: cannot open the WebSocket ({e:?}); is the token right?")
        })?;
        Ok(RtClient { ws, next_id: 0 })
    }

    /// Sends a message; returns its id.
    pub async fn send(&mut self, kind: &str, data: Value) -> Result<String, String> {
        self.next_id += 1;
        let id = format!("lt{}", self.next_id);
        let text = json!({"type": kind, "id": id, "data": data}).to_string();
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
        Ok(id)
    }

    /// The next text message (raw), `None` when the connection ended or `wait` passed.
    pub async fn next_text(&mut self, wait: Duration) -> Option<String> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_string()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next message as JSON.
    pub async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        let t = self.next_text(wait).await?;
        serde_json::from_str(&t).ok()
    }

    /// The reply to `id` (an `error` reply is an `Err`).
    pub async fn reply(&mut self, id: &str, wait: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self
                .next_json(left)
                .await
                .ok_or_else(|| format!("no reply to {id} within {wait:?}"))?;
            if v["id"] == id {
                if v["type"] == "error" {
                    return Err(format!(
                        "{}: {}",
                        v["data"]["code"].as_str().unwrap_or("?"),
                        v["data"]["message"].as_str().unwrap_or("")
                    ));
                }
                return Ok(v);
            }
        }
    }

    /// Joins `session` (or creates one); returns its id.
    pub async fn join(&mut self, session: Option<&str>) -> Result<String, String> {
        let data = match session {
            Some(s) => json!({"session_id": s}),
            None => json!({}),
        };
        let id = self.send("session:join", data).await?;
        let r = self.reply(&id, Duration::from_secs(10)).await?;
        r["data"]["session_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("session:joined without session_id: {r}"))
    }

    /// Starts a task; returns the `worker:status` reply.
    pub async fn start(
        &mut self,
        session: &str,
        tool: &str,
        prompt: &str,
        agent: Option<&str>,
    ) -> Result<Value, String> {
        let mut data = json!({"session_id": session, "tool": tool, "prompt": prompt});
        if let Some(a) = agent {
            data["agent_id"] = Value::from(a);
        }
        let id = self.send("worker:start", data).await?;
        self.reply(&id, Duration::from_secs(10)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_three_parts_and_the_claims() {
        let t = mint_hs256(b"secret", "dev");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("b64");
        let v: Value = serde_json::from_slice(&claims).expect("json");
        assert_eq!(v["sub"], "dev");
    }
}
