//! The `headers` plugin: add, set and remove headers on the request and on the response.
//!
//! Within one direction the edits apply in the order remove → set → add, so a rule can replace a
//! header the client sent (`remove` + `add`) or pin it (`set`).

pub(crate) mod config;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::{HeaderOps, Plugin, PluginCtx, Reject, RequestView};

/// Header edits for one direction.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// Headers to remove entirely.
    pub remove: Vec<HeaderName>,
    /// Headers to replace (any existing values are dropped).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to append (existing values are kept).
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderRules {
    fn apply(&self, headers: &mut dyn HeaderOps) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.set(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Edits request headers (toward the upstream) and response headers (toward the client).
#[derive(Debug)]
pub struct HeadersPlugin {
    name: String,
    request: HeaderRules,
    response: HeaderRules,
}

impl HeadersPlugin {
    /// Creates the plugin named `name` with the edits for each direction.
    pub fn new(name: impl Into<String>, request: HeaderRules, response: HeaderRules) -> Self {
        HeadersPlugin {
            name: name.into(),
            request,
            response,
        }
    }
}

impl Plugin for HeadersPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        self.request.apply(req.headers);
        Ok(())
    }

    fn on_response(&self, _status: StatusCode, headers: &mut dyn HeaderOps, _ctx: &PluginCtx) {
        self.response.apply(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Chain;
    use http::{HeaderMap, Method};
    use std::sync::Arc;

    fn hn(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }
    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn request_rules_apply_remove_set_add() {
        let p = HeadersPlugin::new(
            "h",
            HeaderRules {
                remove: vec![hn("x-drop")],
                set: vec![(hn("x-set"), hv("new"))],
                add: vec![(hn("x-add"), hv("2"))],
            },
            HeaderRules::default(),
        );
        let mut h = HeaderMap::new();
        h.insert("x-drop", hv("1"));
        h.insert("x-set", hv("old"));
        h.insert("x-add", hv("1"));
        let mut ctx = PluginCtx::default();
        let mut view = RequestView {
            method: &Method::GET,
            path: "/",
            headers: &mut h,
            client_ip: None,
            ctx: &mut ctx,
        };
        p.on_request(&mut view).expect("no reject");
        assert!(h.get("x-drop").is_none());
        assert_eq!(h.get("x-set").unwrap(), "new");
        assert_eq!(h.get_all("x-add").iter().count(), 2);
    }

    #[test]
    fn chain_runs_request_in_order_and_response_in_reverse() {
        let a = HeadersPlugin::new(
            "a",
            HeaderRules {
                set: vec![(hn("x-order"), hv("a"))],
                ..Default::default()
            },
            HeaderRules {
                set: vec![(hn("x-order"), hv("a"))],
                ..Default::default()
            },
        );
        let b = HeadersPlugin::new(
            "b",
            HeaderRules {
                set: vec![(hn("x-order"), hv("b"))],
                ..Default::default()
            },
            HeaderRules {
                set: vec![(hn("x-order"), hv("b"))],
                ..Default::default()
            },
        );
        let chain = Chain::new(vec![Arc::new(a), Arc::new(b)]);
        let mut req = HeaderMap::new();
        let mut ctx = PluginCtx::default();
        chain
            .on_request(&mut RequestView {
                method: &Method::GET,
                path: "/",
                headers: &mut req,
                client_ip: None,
                ctx: &mut ctx,
            })
            .expect("no reject");
        assert_eq!(req.get("x-order").unwrap(), "b", "last request plugin wins");
        let mut resp = HeaderMap::new();
        chain.on_response(StatusCode::OK, &mut resp, &ctx);
        assert_eq!(
            resp.get("x-order").unwrap(),
            "a",
            "response runs in reverse"
        );
        assert_eq!(chain.names().collect::<Vec<_>>(), vec!["a", "b"]);
    }
}
