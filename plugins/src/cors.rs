//! The `cors` plugin: answers CORS preflights at the gateway and adds CORS headers to responses.
//!
//! ```toml
//! [plugins.cors]
//! kind = "cors"
//! origins = ["https://app.example", "http://localhost:5173"]   # or "*"
//! methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]          # default GET, HEAD, POST, PUT, PATCH, DELETE
//! headers = ["authorization", "content-type"]                  # request headers allowed; "*" = any (default none)
//! expose_headers = ["x-request-id"]                            # response headers scripts may read (default none)
//! credentials = true                                           # cookies / Authorization allowed (default false)
//! max_age = "10m"                                              # preflight cache time (default: not sent)
//! ```
//!
//! **Preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): answered by the
//! gateway, never proxied.
//! - Origin, method and every requested header allowed → `204` (a [`Reject::plain_answer`], no body)
//!   with `Access-Control-Allow-Origin`, `-Allow-Methods`, `-Allow-Headers` (the configured list,
//!   or the requested headers when `headers = "*"`), `-Allow-Credentials: true` (when
//!   `credentials`), `-Max-Age` (when set) and `Vary: Origin, Access-Control-Request-Method,
//!   Access-Control-Request-Headers`.
//! - Otherwise → `403`, code `AUTH_001`, with a message naming what was refused, and no CORS
//!   headers.
//!
//! **Actual requests** (any other request with `Origin`) are proxied; when the origin is allowed
//! the response gets `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers`
//! (replacing any the upstream sent). A disallowed origin gets no CORS headers (the browser then
//! hides the response from the script).
//!
//! `Access-Control-Allow-Origin` is `*` when `origins = "*"` without credentials, and otherwise
//! the request's origin echoed, with `Vary: Origin` merged into the response on every request
//! (with or without `Origin`) so caches keep per-origin copies. Note that `origins = "*"` with
//! `credentials = true` lets every site make credentialed requests.
//!
//! Origins compare ASCII-case-insensitively and exactly (`scheme://host[:port]`, no path).
//! Put `cors` first in the route's chain: preflights carry no credentials, and CORS headers are
//! then also on the error answers of later plugins (401, 429), so scripts can read them.

pub(crate) mod config;

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::{Plugin, Reject, RequestView};

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (`"*"`).
    Any,
    /// Exactly these origins (lowercase `scheme://host[:port]`).
    List(Vec<String>),
}

/// Which request headers a preflight may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHeaders {
    /// Any header (`"*"`): the requested list is echoed.
    Any,
    /// Exactly these headers.
    List(Vec<HeaderName>),
}

/// Typed parameters of a `cors` plugin.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Allowed origins.
    pub origins: AllowedOrigins,
    /// Allowed methods.
    pub methods: Vec<Method>,
    /// Allowed request headers.
    pub headers: AllowedHeaders,
    /// Response headers exposed to scripts.
    pub expose_headers: Vec<HeaderName>,
    /// Allow credentials (cookies, `Authorization`).
    pub credentials: bool,
    /// Preflight cache time.
    pub max_age: Option<Duration>,
}

impl CorsConfig {
    /// Defaults for everything but the origins.
    pub fn new(origins: AllowedOrigins) -> Self {
        CorsConfig {
            origins,
            methods: [
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ]
            .into(),
            headers: AllowedHeaders::List(Vec::new()),
            expose_headers: Vec::new(),
            credentials: false,
            max_age: None,
        }
    }
}

/// Checks one configured origin and returns it normalised (lowercase).
pub fn parse_origin(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err("expected scheme://host[:port], e.g. https://app.example".into());
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() || rest.contains(['/', '?', '#', ' ', '*']) {
        return Err(
            "expected scheme://host[:port] without path or wildcard, e.g. https://app.example"
                .into(),
        );
    }
    Ok(lower)
}

/// The `cors` plugin (see the module doc).
#[derive(Debug)]
pub struct CorsPlugin {
    name: String,
    origins: AllowedOrigins,
    methods: Vec<Method>,
    headers: AllowedHeaders,
    credentials: bool,
    methods_value: HeaderValue,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    max_age_value: Option<HeaderValue>,
}

fn join<T: AsRef<str>>(items: &[T]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    let s = items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::try_from(s).ok()
}

const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
const VARY_PREFLIGHT: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

impl CorsPlugin {
    /// Creates the plugin named `name`.
    pub fn new(name: impl Into<String>, cfg: CorsConfig) -> Self {
        let headers_value = match &cfg.headers {
            AllowedHeaders::Any => None,
            AllowedHeaders::List(list) => join(list),
        };
        CorsPlugin {
            name: name.into(),
            methods_value: join(&cfg.methods).unwrap_or(HeaderValue::from_static("GET")),
            headers_value,
            expose_value: join(&cfg.expose_headers),
            max_age_value: cfg.max_age.map(|d| HeaderValue::from(d.as_secs())),
            origins: cfg.origins,
            methods: cfg.methods,
            headers: cfg.headers,
            credentials: cfg.credentials,
        }
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => {
                let o = origin.as_bytes();
                list.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(o))
            }
        }
    }

    /// `*` is sent (and the response does not vary by origin) only for any origin without
    /// credentials.
    fn wildcard(&self) -> bool {
        self.origins == AllowedOrigins::Any && !self.credentials
    }

    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.wildcard() {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    fn forbidden(&self, what: String) -> Reject {
        Reject::new(StatusCode::FORBIDDEN, "AUTH_001", format!("CORS: {what}"))
    }

    fn preflight(&self, req: &RequestView<'_>, origin: &HeaderValue) -> Reject {
        let shown = String::from_utf8_lossy(origin.as_bytes());
        if !self.allows_origin(origin) {
            return self.forbidden(format!("origin {shown} is not allowed"));
        }
        let method = req
            .headers
            .get(&ACCESS_CONTROL_REQUEST_METHOD)
            .map(|m| m.as_bytes())
            .unwrap_or_default();
        if !self.methods.iter().any(|m| m.as_str().as_bytes() == method) {
            let m = String::from_utf8_lossy(method);
            return self.forbidden(format!("method {m} is not allowed"));
        }
        let requested = req.headers.get(&ACCESS_CONTROL_REQUEST_HEADERS);
        if let (AllowedHeaders::List(list), Some(req_headers)) = (&self.headers, requested) {
            let text = String::from_utf8_lossy(req_headers.as_bytes());
            let refused = text
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .find(|h| !list.iter().any(|a| a.as_str().eq_ignore_ascii_case(h)));
            if let Some(h) = refused {
                return self.forbidden(format!("request header {h} is not allowed"));
            }
        }
        let mut headers = vec![
            (ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin)),
            (ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone()),
        ];
        let allow_headers = match &self.headers {
            AllowedHeaders::Any => requested.cloned(),
            AllowedHeaders::List(_) => self.headers_value.clone(),
        };
        if let Some(v) = allow_headers {
            headers.push((ACCESS_CONTROL_ALLOW_HEADERS, v));
        }
        if self.credentials {
            headers.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(v) = &self.max_age_value {
            headers.push((ACCESS_CONTROL_MAX_AGE, v.clone()));
        }
        headers.push((VARY, VARY_PREFLIGHT));
        Reject::plain_answer(
            StatusCode::NO_CONTENT,
            headers,
            format!("CORS preflight from {shown}"),
        )
    }
}

impl Plugin for CorsPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        let Some(origin) = req.headers.get(&ORIGIN).cloned() else {
            if !self.wildcard() {
                req.ctx.response_headers.push((VARY, VARY_ORIGIN));
            }
            return Ok(());
        };
        if req.method == Method::OPTIONS
            && req.headers.get(&ACCESS_CONTROL_REQUEST_METHOD).is_some()
        {
            return Err(self.preflight(req, &origin));
        }
        let queue = &mut req.ctx.response_headers;
        if self.allows_origin(&origin) {
            queue.push((
                ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin_value(&origin),
            ));
            if self.credentials {
                queue.push((
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
            if let Some(v) = &self.expose_value {
                queue.push((ACCESS_CONTROL_EXPOSE_HEADERS, v.clone()));
            }
        }
        if !self.wildcard() {
            queue.push((VARY, VARY_ORIGIN));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, PluginCtx};
    use http::HeaderMap;
    use std::sync::Arc;

    fn chain(cfg: CorsConfig) -> Chain {
        Chain::new(vec![Arc::new(CorsPlugin::new("cors", cfg))])
    }

    fn list_cfg() -> CorsConfig {
        let mut cfg = CorsConfig::new(AllowedOrigins::List(vec!["https://app.example".into()]));
        cfg.headers = AllowedHeaders::List(vec![
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type"),
        ]);
        cfg.expose_headers = vec![HeaderName::from_static("x-request-id")];
        cfg.credentials = true;
        cfg.max_age = Some(Duration::from_secs(600));
        cfg
    }

    fn request(
        c: &Chain,
        method: Method,
        headers: &[(&'static str, &'static str)],
    ) -> (Result<(), Reject>, PluginCtx) {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(*n, HeaderValue::from_static(v));
        }
        let mut ctx = PluginCtx::default();
        let r = c.on_request(&mut RequestView {
            method: &method,
            path: "/api/x",
            headers: &mut h,
            client_ip: None,
            ctx: &mut ctx,
        });
        (r, ctx)
    }

    fn get<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &HeaderName) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn preflight_allowed() {
        let c = chain(list_cfg());
        let (r, _) = request(
            &c,
            Method::OPTIONS,
            &[
                ("origin", "https://APP.example"),
                ("access-control-request-method", "PUT"),
                (
                    "access-control-request-headers",
                    "Content-Type, authorization",
                ),
            ],
        );
        let reply = r.expect_err("answered at the gateway");
        assert!(reply.plain_answer);
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(reply.code, "");
        let h = &reply.headers;
        assert_eq!(
            get(h, &ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://APP.example")
        );
        assert_eq!(
            get(h, &ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, HEAD, POST, PUT, PATCH, DELETE")
        );
        assert_eq!(
            get(h, &ACCESS_CONTROL_ALLOW_HEADERS),
            Some("authorization, content-type")
        );
        assert_eq!(get(h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(get(h, &ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert!(get(h, &VARY).expect("vary").starts_with("Origin"));
    }

    #[test]
    fn preflight_denied() {
        let c = chain(list_cfg());
        for (headers, what) in [
            (
                vec![
                    ("origin", "https://evil.example"),
                    ("access-control-request-method", "GET"),
                ],
                "origin https://evil.example is not allowed",
            ),
            (
                vec![
                    ("origin", "https://app.example"),
                    ("access-control-request-method", "TRACE"),
                ],
                "method TRACE is not allowed",
            ),
            (
                vec![
                    ("origin", "https://app.example"),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "x-secret"),
                ],
                "request header x-secret is not allowed",
            ),
        ] {
            let (r, _) = request(&c, Method::OPTIONS, &headers);
            let e = r.expect_err("denied");
            assert!(!e.plain_answer);
            assert_eq!(e.status, StatusCode::FORBIDDEN);
            assert_eq!(e.code, "AUTH_001");
            assert_eq!(e.message, format!("CORS: {what}"));
            assert!(get(&e.headers, &ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        }
        // OPTIONS without Access-Control-Request-Method is an ordinary request: proxied.
        let (r, _) = request(&c, Method::OPTIONS, &[("origin", "https://app.example")]);
        r.expect("not a preflight");
    }

    #[test]
    fn actual_request_headers_on_response() {
        let c = chain(list_cfg());
        let (r, ctx) = request(&c, Method::GET, &[("origin", "https://app.example")]);
        r.expect("proxied");
        let mut resp = HeaderMap::new();
        resp.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        resp.insert(VARY, HeaderValue::from_static("accept-encoding"));
        c.on_response(StatusCode::OK, &mut resp, &ctx);
        assert_eq!(
            resp[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example",
            "replaces upstream's"
        );
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(resp[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
        let vary: Vec<_> = resp.get_all(VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "Origin"], "merged, not replaced");

        // Disallowed origin: proxied, no CORS headers, still Vary: Origin.
        let (r, ctx) = request(&c, Method::GET, &[("origin", "https://evil.example")]);
        r.expect("proxied");
        let mut resp = HeaderMap::new();
        resp.insert(VARY, HeaderValue::from_static("Origin"));
        c.on_response(StatusCode::OK, &mut resp, &ctx);
        assert!(resp.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(
            resp.get_all(VARY).iter().count(),
            1,
            "no duplicate Vary token"
        );

        // No Origin at all: only Vary.
        let (_, ctx) = request(&c, Method::GET, &[]);
        assert_eq!(ctx.response_headers, vec![(VARY, VARY_ORIGIN)]);
    }

    #[test]
    fn wildcard_origins() {
        let mut cfg = CorsConfig::new(AllowedOrigins::Any);
        cfg.headers = AllowedHeaders::Any;
        let c = chain(cfg.clone());
        let (r, ctx) = request(&c, Method::GET, &[("origin", "https://any.example")]);
        r.expect("proxied");
        assert_eq!(
            ctx.response_headers,
            vec![(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"))]
        );
        let (r, _) = request(
            &c,
            Method::OPTIONS,
            &[
                ("origin", "https://any.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-anything"),
            ],
        );
        let reply = r.expect_err("preflight");
        assert_eq!(get(&reply.headers, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(
            get(&reply.headers, &ACCESS_CONTROL_ALLOW_HEADERS),
            Some("x-anything")
        );
        // With credentials the origin is echoed, never `*`.
        cfg.credentials = true;
        let c = chain(cfg);
        let (_, ctx) = request(&c, Method::GET, &[("origin", "https://any.example")]);
        assert_eq!(
            get(&ctx.response_headers, &ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://any.example")
        );
    }

    #[test]
    fn origin_parsing() {
        assert_eq!(
            parse_origin("https://App.Example:8443"),
            Ok("https://app.example:8443".into())
        );
        for bad in [
            "app.example",
            "https://app.example/",
            "https://*.example",
            "https://",
            "null",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
