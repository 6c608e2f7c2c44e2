//! The route table: first match in file order wins.
//!
//! A route matches when every condition it sets holds: host (exact, `*.suffix` or `*`), path
//! (prefix or exact; prefixes are plain string prefixes, so `/api` also matches `/apix` — end the
//! prefix with `/` to match a segment), method, and header values. The query string never takes
//! part in matching.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use orchestra_plugins::Chain;

/// How a route matches the request's host (port removed, compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `*` or absent: any host, including none.
    Any,
    /// An exact host name, stored lowercase.
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (stored lowercase, with the dot).
    Suffix(String),
}

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// No path condition.
    Any,
    /// The path starts with this string.
    Prefix(String),
    /// The path equals this string.
    Exact(String),
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name for logs and metrics.
    pub name: Arc<str>,
    /// Host condition.
    pub host: HostMatch,
    /// Path condition.
    pub path: PathMatch,
    /// Allowed methods (`None` = any).
    pub methods: Option<Vec<Method>>,
    /// Required header values.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Where matching requests go: an upstream, or a service of the gateway itself.
    pub target: RouteTarget,
    /// Plugins to run, in order.
    pub chain: Chain,
    /// Remove the matched prefix before forwarding.
    pub strip_prefix: bool,
}

/// Where a route sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// Proxied to the upstream at this index of [`Snapshot::upstreams`](crate::Snapshot).
    Upstream(usize),
    /// Answered by the gateway itself (`serve = "..."`).
    Service(Service),
}

/// A service the gateway answers itself, named by a route's `serve` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `serve = "realtime"`: the browser channel, WebSocket (on an upgrade) or SSE.
    Realtime,
    /// `serve = "agents"`: the agent protocol over WebSocket (`/agent/ws`).
    Agents,
}

impl Service {
    /// The name written in `serve = "..."`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Realtime => "realtime",
            Service::Agents => "agents",
        }
    }
}

impl Route {
    /// The index of the route's upstream, when it proxies.
    pub fn upstream(&self) -> Option<usize> {
        match self.target {
            RouteTarget::Upstream(i) => Some(i),
            RouteTarget::Service(_) => None,
        }
    }

    /// The service answering the route, when the gateway answers it itself.
    pub fn service(&self) -> Option<Service> {
        match self.target {
            RouteTarget::Service(s) => Some(s),
            RouteTarget::Upstream(_) => None,
        }
    }
}

/// The parts of a request that routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Host from `:authority` or `Host`, possibly with a port.
    pub host: Option<&'a str>,
    /// Path without the query string.
    pub path: &'a str,
    /// Request method.
    pub method: &'a Method,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

impl HostMatch {
    fn matches(&self, host: Option<&str>) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host.is_some_and(|x| x.eq_ignore_ascii_case(h)),
            HostMatch::Suffix(s) => host.is_some_and(|x| {
                x.len() > s.len()
                    && x.is_char_boundary(x.len() - s.len())
                    && x[x.len() - s.len()..].eq_ignore_ascii_case(s)
            }),
        }
    }
}

impl Route {
    /// True when every condition of this route holds for `req`.
    pub fn matches(&self, req: &RouteRequest<'_>, host: Option<&str>) -> bool {
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => req.path.starts_with(p.as_str()),
            PathMatch::Exact(p) => req.path == p,
        };
        path_ok
            && self.host.matches(host)
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| x == req.method))
            && self
                .headers
                .iter()
                .all(|(n, v)| req.headers.get_all(n).iter().any(|x| x == v))
    }

    /// The path and query to send upstream: with `strip_prefix`, the matched prefix is removed
    /// and a leading `/` kept. Returns `None` when the path is forwarded unchanged.
    pub fn rewrite_path(&self, path_and_query: &str) -> Option<String> {
        match (&self.path, self.strip_prefix) {
            (PathMatch::Prefix(p), true) => {
                let rest = path_and_query.strip_prefix(p.as_str())?;
                let rest = rest.trim_start_matches('/');
                Some(format!("/{rest}"))
            }
            _ => None,
        }
    }
}

/// Routes in file order, indexed by the first path segment they require.
///
/// A route whose path condition fixes the first segment (`path_prefix = "/api/"`, or an exact
/// path) can only match requests with that first segment; every other route (no path, `/`, or a
/// prefix that ends inside a segment like `/ap`) is a candidate for every request. A lookup walks
/// the request's segment bucket and the always-candidates together in file order, so the first
/// match is the same as a full scan's, and a table of 10,000 `/svcN/` routes checks two routes
/// instead of 10,000.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    by_segment: std::collections::HashMap<String, Vec<u32>>,
    any_segment: Vec<u32>,
}

/// The first path segment a route requires, if its path condition fixes one.
fn required_segment(path: &PathMatch) -> Option<&str> {
    match path {
        PathMatch::Any => None,
        PathMatch::Prefix(p) => {
            let rest = p.strip_prefix('/')?;
            let end = rest.find('/')?;
            Some(&rest[..end])
        }
        PathMatch::Exact(p) => {
            let rest = p.strip_prefix('/')?;
            Some(rest.split('/').next().unwrap_or(""))
        }
    }
}

fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

impl RouteTable {
    /// Wraps compiled routes, keeping their order, and builds the segment index.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut by_segment: std::collections::HashMap<String, Vec<u32>> = Default::default();
        let mut any_segment = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match required_segment(&r.path) {
                Some(seg) => by_segment
                    .entry(seg.to_string())
                    .or_default()
                    .push(i as u32),
                None => any_segment.push(i as u32),
            }
        }
        RouteTable {
            routes,
            by_segment,
            any_segment,
        }
    }

    /// The first route that matches `req`, with its index.
    pub fn find(&self, req: &RouteRequest<'_>) -> Option<(usize, &Route)> {
        let host = req.host.map(strip_port);
        let bucket: &[u32] = self
            .by_segment
            .get(first_segment(req.path))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let (mut a, mut b) = (bucket.iter().peekable(), self.any_segment.iter().peekable());
        loop {
            // Merge the two ascending index lists to visit candidates in file order.
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => return None,
            };
            let i = *next? as usize;
            let r = &self.routes[i];
            if r.matches(req, host) {
                return Some((i, r));
            }
        }
    }

    /// All routes in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Removes a `:port` suffix from a host (`[::1]:8080` → `[::1]`, `a.b:80` → `a.b`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map(|i| &host[..=i]).unwrap_or(host);
    }
    match host.rfind(':') {
        Some(i)
            if host[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && host[..i].find(':').is_none() =>
        {
            &host[..i]
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: HostMatch, path: PathMatch) -> Route {
        Route {
            name: "r".into(),
            host,
            path,
            methods: None,
            headers: vec![],
            target: RouteTarget::Upstream(0),
            chain: Chain::default(),
            strip_prefix: false,
        }
    }

    fn req<'a>(host: Option<&'a str>, path: &'a str, h: &'a HeaderMap) -> RouteRequest<'a> {
        RouteRequest {
            host,
            path,
            method: &Method::GET,
            headers: h,
        }
    }

    #[test]
    fn host_kinds() {
        let h = HeaderMap::new();
        let t = RouteTable::new(vec![
            route(HostMatch::Exact("api.example.com".into()), PathMatch::Any),
            route(HostMatch::Suffix(".example.com".into()), PathMatch::Any),
            route(HostMatch::Any, PathMatch::Any),
        ]);
        assert_eq!(
            t.find(&req(Some("API.example.com:8080"), "/", &h))
                .unwrap()
                .0,
            0
        );
        assert_eq!(t.find(&req(Some("a.b.example.com"), "/", &h)).unwrap().0, 1);
        assert_eq!(t.find(&req(Some("example.com"), "/", &h)).unwrap().0, 2);
        assert_eq!(t.find(&req(None, "/", &h)).unwrap().0, 2);
    }

    #[test]
    fn path_kinds_and_strip() {
        let h = HeaderMap::new();
        let mut r = route(HostMatch::Any, PathMatch::Prefix("/api/".into()));
        r.strip_prefix = true;
        let t = RouteTable::new(vec![
            route(HostMatch::Any, PathMatch::Exact("/x".into())),
            r,
        ]);
        assert_eq!(t.find(&req(None, "/x", &h)).unwrap().0, 0);
        assert!(t.find(&req(None, "/x/y", &h)).is_none());
        let (_, r) = t.find(&req(None, "/api/v1", &h)).unwrap();
        assert_eq!(r.rewrite_path("/api/v1?q=1").as_deref(), Some("/v1?q=1"));
        assert_eq!(r.rewrite_path("/api/").as_deref(), Some("/"));
    }

    #[test]
    fn index_keeps_file_order_across_buckets() {
        let h = HeaderMap::new();
        let t = RouteTable::new(vec![
            route(
                HostMatch::Exact("a.example".into()),
                PathMatch::Prefix("/api/".into()),
            ),
            route(HostMatch::Any, PathMatch::Prefix("/ap".into())),
            route(HostMatch::Any, PathMatch::Prefix("/api/".into())),
            route(HostMatch::Any, PathMatch::Exact("/api".into())),
            route(HostMatch::Any, PathMatch::Any),
        ]);
        assert_eq!(t.find(&req(Some("a.example"), "/api/x", &h)).unwrap().0, 0);
        assert_eq!(
            t.find(&req(Some("b.example"), "/api/x", &h)).unwrap().0,
            1,
            "/ap before /api/"
        );
        assert_eq!(t.find(&req(None, "/apx", &h)).unwrap().0, 1);
        assert_eq!(t.find(&req(None, "/other", &h)).unwrap().0, 4);
        let t2 = RouteTable::new(vec![
            route(HostMatch::Any, PathMatch::Exact("/api".into())),
            route(HostMatch::Any, PathMatch::Prefix("/api/".into())),
            route(HostMatch::Any, PathMatch::Any),
        ]);
        assert_eq!(t2.find(&req(None, "/api", &h)).unwrap().0, 0);
        assert_eq!(t2.find(&req(None, "/api/v1", &h)).unwrap().0, 1);
        assert_eq!(t2.find(&req(None, "/", &h)).unwrap().0, 2);
        assert_eq!(t2.find(&req(None, "", &h)).unwrap().0, 2);
    }

    /// The index must agree with a plain first-match scan on every request.
    #[test]
    fn index_agrees_with_linear_scan() {
        let h = HeaderMap::new();
        let paths = ["/", "/a", "/a/", "/a/b", "/ab", "/b/", "/b/c/d", "/c", ""];
        let mut routes = Vec::new();
        for p in ["/a/", "/a", "/ab", "/b/c/", "/", "/c"] {
            routes.push(route(HostMatch::Any, PathMatch::Prefix(p.into())));
            routes.push(route(HostMatch::Any, PathMatch::Exact(p.into())));
        }
        routes.push(route(HostMatch::Any, PathMatch::Any));
        for skip in 0..routes.len() {
            let subset: Vec<Route> = routes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, r)| r.clone())
                .collect();
            let t = RouteTable::new(subset.clone());
            for p in paths {
                let r = req(None, p, &h);
                let scan = subset.iter().position(|x| x.matches(&r, None));
                assert_eq!(t.find(&r).map(|(i, _)| i), scan, "path {p:?} skip {skip}");
            }
        }
    }

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }
}
