//! Launch helpers: a started, ready gateway with the clients a test drives it with.

use testkit::{GatewayBuilder, GatewayProcess};

use super::admin::Admin;
use super::{gateway, http_client, wait_ready};

/// A gateway with an admin listener, ready (`/readyz` answered 200), with a client of its
/// admin API and a plain HTTP client for its data plane.
///
/// Destructure it with a binding for `gw` (`AdminGateway { gw, admin, .. }`, or `gw: _gw`):
/// `..` drops the fields it skips, and dropping `gw` stops the gateway.
pub struct AdminGateway {
    /// The process (addresses, logs, config file).
    pub gw: GatewayProcess,
    /// Its admin API.
    pub admin: Admin,
    /// A cleartext HTTP/1.1 client (see [`http_client`]).
    pub client: reqwest::Client,
}

impl AdminGateway {
    /// Starts [`gateway()`] with the config body `body` and an admin listener.
    pub async fn start(body: impl Into<String>) -> Self {
        Self::start_from(gateway().config(body)).await
    }

    /// Starts `builder` with an admin listener added.
    pub async fn start_from(builder: GatewayBuilder) -> Self {
        let gw = builder
            .admin(true)
            .start()
            .await
            .unwrap_or_else(|e| panic!("gateway starts: {e}"));
        wait_ready(&gw).await;
        let admin = Admin::new(&gw);
        Self {
            gw,
            admin,
            client: http_client(),
        }
    }

    /// `http://HTTP_ADDR{path}` on the data plane.
    pub fn url(&self, path: &str) -> String {
        self.gw.http_url(path)
    }
}
