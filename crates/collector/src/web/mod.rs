//! The web dashboard: server-rendered pages (askama templates compiled into the binary,
//! HTML escaping on for every value), one vendored stylesheet, charts as inline SVG built
//! here, no JavaScript. Local operator accounts log in with a password; a session cookie
//! and a per-session CSRF token on every form. Viewers read; analysts act on findings;
//! admins also act on hosts. Every action is written to the audit log.
//!
//! Every response carries a strict Content-Security-Policy (no script at all, styles only
//! from the collector), `X-Frame-Options: DENY`, `nosniff` and `no-referrer`.
//!
//! Must never: render host-supplied text without escaping (no `|safe` on host data); accept
//! a POST without a valid session and CSRF token, or from a role not allowed to act.

pub mod auth;
mod chart;
mod pages;

use crate::http::AppState;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes (merged into [`crate::http::app`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/findings", get(pages::findings))
        .route("/findings.csv", get(pages::findings_csv))
        .route("/findings/{id}", get(pages::finding))
        .route("/findings/{id}/action", post(pages::finding_action))
        .route("/hosts/{id}", get(pages::host))
        .route("/hosts/{id}/action", post(pages::host_action))
        .route("/static/dashboard.css", get(stylesheet))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

const STYLESHEET: &str = include_str!("../../static/dashboard.css");

async fn stylesheet() -> Response {
    let mut resp = Response::new(axum::body::Body::from(STYLESHEET));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

/// `s` percent-encoded for a URL path segment or query value (only unreserved characters
/// stay as they are).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Unix milliseconds for a person (UTC, to the second).
pub fn when(ms: u64) -> String {
    let s = crate::alerts::rfc3339(ms);
    s.replacen('T', " ", 1).trim_end_matches('Z').to_string() + " UTC"
}

/// Host-supplied text made visible: control and format characters as `\u{…}` (escape
/// sequences would otherwise pass silently); HTML escaping is askama's.
pub fn shown(s: &str) -> String {
    crate::escape::printable(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(super::pct("h-1:a b/<x>&"), "h-1%3Aa%20b%2F%3Cx%3E%26");
    }
}
