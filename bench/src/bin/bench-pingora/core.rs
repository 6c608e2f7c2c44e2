//! `bench-pingora --core`: the floor *below* pingora-proxy — the same exchange written directly
//! on pingora-core's server sessions (HTTP/1.1, and HTTP/2 over h2c or TLS: pingora-core's own
//! connection handling spawns a task per HTTP/2 stream, as under the proxy), without
//! `HttpProxy`'s phases, modules and task plumbing. The upstream is HTTP/1.1 either way.
//!
//! Per request (on a keep-alive connection, or an HTTP/2 stream): read the head
//! (`ServerSession::read_request`), take a
//! pooled upstream session from the same `Connector` the proxy uses, send a copy of the head
//! (version 1.1, `Connection` dropped, `Host` from the HTTP/2 `:authority` when absent), finish the (empty) request body, read the response head,
//! write it downstream, relay the body, return the upstream session to the pool and the client
//! connection to the accept loop (`ServerSession::finish`). That is what an HTTP/1 fast path on
//! pingora-core's lower layers would have to do at least; the gap between this mode and the
//! default one in `bench/callgrind-ir` or `bench/compare` is what pingora-proxy's orchestration
//! costs per request.
//!
//! Deliberately minimal, like the rest of this binary: requests with a body and upgrades are
//! answered `501`; an upstream failure is a `502` and the connection is closed. Not a proxy to
//! put in front of anything.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use orchestra_bench::floor::{AccessLog, IDLE_TIMEOUT};

/// The core-only app: every request goes to `peer`.
pub struct Core {
    /// The upstream, built once.
    pub peer: HttpPeer,
    /// The pooled connector (pingora's pool, or the lazy one with `--lazy-idle-pool`).
    pub connector: Arc<Connector>,
    /// The buffered access log, if any.
    pub access_log: Option<Arc<AccessLog>>,
    /// What pingora-core applies to each HTTP/1 session (the header case setting).
    pub options: HttpServerOptions,
}

impl Core {
    /// Proxies one request whose head has been read; returns the status sent downstream.
    async fn exchange(&self, session: &mut ServerSession) -> Result<u16> {
        let (upstream, _reused) = self.connector.get_http_session(&self.peer).await?;
        let ClientSession::H1(mut upstream) = upstream else {
            return Err(Error::explain(ErrorType::InternalError, "not HTTP/1"));
        };
        let mut req = session.req_header().clone();
        req.set_version(http::Version::HTTP_11);
        req.remove_header(&http::header::CONNECTION);
        if !req.headers.contains_key(http::header::HOST) {
            // An HTTP/2 request names its host in `:authority` (the URI), HTTP/1.1 in `Host`.
            if let Some(authority) = req.uri.authority().map(|a| a.as_str().to_owned()) {
                req.insert_header(http::header::HOST, authority)?;
            }
        }
        upstream.write_request_header(Box::new(req)).await?;
        upstream.finish_body().await?;
        let mut resp = upstream.read_resp_header_parts().await?;
        while resp.status.is_informational() {
            session.write_response_header(resp).await?;
            resp = upstream.read_resp_header_parts().await?;
        }
        let status = resp.status.as_u16();
        session.write_response_header(resp).await?;
        while let Some(body) = upstream.read_body_bytes().await? {
            let end = upstream.is_body_done();
            session.write_response_body(body, end).await?;
        }
        self.connector
            .release_http_session(ClientSession::H1(upstream), &self.peer, Some(IDLE_TIMEOUT))
            .await;
        Ok(status)
    }

    /// Answers `status` with an empty body (the request is not proxied).
    async fn answer(session: &mut ServerSession, status: u16) -> u16 {
        if let Ok(mut resp) = ResponseHeader::build(status, Some(1)) {
            let _ = resp.insert_header(http::header::CONTENT_LENGTH, "0");
            let _ = session.write_response_header(Box::new(resp)).await;
        }
        status
    }
}

#[async_trait]
impl HttpServerApp for Core {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        let started = Instant::now();
        session.set_keepalive(Some(60));
        let plain = session.is_body_empty() && !session.is_upgrade_req();
        let status = if !plain {
            session.set_keepalive(None);
            Self::answer(&mut session, 501).await
        } else {
            match self.exchange(&mut session).await {
                Ok(status) => status,
                Err(_) => {
                    session.set_keepalive(None);
                    Self::answer(&mut session, 502).await
                }
            }
        };
        if let Some(log) = &self.access_log {
            let req = session.req_header();
            let bytes = session.body_bytes_sent();
            log.write(req.method.as_str(), req.uri.path(), status, bytes, started);
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}
