//! The operator dashboard at `GET /admin/`: one HTML page, its script and style, and uPlot
//! (vendored from the npm registry with its MIT license, `gateway/assets/vendor/uplot/`), all
//! embedded in the binary with `include_str!` — no build step, nothing fetched at run time.
//!
//! The page and its assets are public (they hold no data); every call the page makes goes to the
//! admin API with `Authorization: Bearer ...`. The token comes from the URL fragment
//! (`/admin/#token=...`, which browsers never send to the server) or is asked once, and is kept in
//! `sessionStorage` for the tab; the fragment is removed from the address bar at load.
//!
//! Responses carry a strict Content-Security-Policy (scripts, styles and connections to this
//! origin only; no framing), `Referrer-Policy: no-referrer` and `nosniff`.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

/// The CSP of every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: &str = include_str!("../assets/dashboard/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        path: "/admin/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dashboard/app.js"),
    },
    Asset {
        path: "/admin/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/dashboard/app.css"),
    },
    Asset {
        path: "/admin/assets/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/admin/assets/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "/admin/assets/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../assets/vendor/uplot/LICENSE"),
    },
];

/// True for the paths served without a token: the page and its assets.
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/admin" || path == "/admin/" || ASSETS.iter().any(|a| a.path == path)
}

/// Answers a dashboard path (see [`is_dashboard_path`]); `None` for any other path.
pub fn serve<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    if !is_dashboard_path(path) {
        return None;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "the dashboard answers GET only\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    if path == "/admin" {
        // Relative asset URLs need the trailing slash.
        let mut r = respond(
            StatusCode::PERMANENT_REDIRECT,
            "text/plain; charset=utf-8",
            "",
        );
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/admin/"));
        return Some(r);
    }
    if path == "/admin/" {
        return Some(respond(StatusCode::OK, "text/html; charset=utf-8", INDEX));
    }
    ASSETS
        .iter()
        .find(|a| a.path == path)
        .map(|a| respond(StatusCode::OK, a.content_type, a.body))
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_references_is_served() {
        for a in ASSETS.iter().filter(|a| !a.path.ends_with("LICENSE")) {
            let name = a.path.trim_start_matches("/admin/");
            assert!(INDEX.contains(name), "index.html does not reference {name}");
        }
        let req = Request::get("/admin/assets/app.js")
            .body(())
            .expect("request");
        let r = serve(&req).expect("served");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(serve(&Request::get("/admin/config").body(()).expect("req")).is_none());
        let post = Request::post("/admin/").body(()).expect("request");
        assert_eq!(
            serve(&post).map(|r| r.status()),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
    }
}
