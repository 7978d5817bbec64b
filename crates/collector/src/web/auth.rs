//! The dashboard's logins: Argon2id password hashes, session and CSRF tokens, cookies.
//!
//! A session id is 256 random bits, sent only in an `HttpOnly; SameSite=Strict` cookie
//! (`Secure` when the collector speaks TLS) and stored only as its SHA-256. Every form
//! carries the session's CSRF token; the login form, before any session, a token that must
//! equal a short-lived login cookie (double submit).
//!
//! Must never: put a secret in a URL; store a password or session id in the clear.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "aupwatch_session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "aupwatch_login";
/// How long a session lasts.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("a password must have at least 12 characters")]
    TooShort,
}

/// The smallest password `user create` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// An Argon2id PHC string for `password` (the crate's default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `phc`; a malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A fixed hash to verify against when the name is unknown, so that a wrong name costs as
/// long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"aupwatch-no-such-user")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Equal strings, compared in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure over TLS.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Max-Age={max_age_secs}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Failed logins per account name: after [`FREE_FAILURES`] failures in a row, each next
/// attempt on that name must wait 2^(failures − FREE_FAILURES) seconds (at most
/// [`MAX_WAIT_SECS`]) after the last failure, or is refused unchecked (429). A success
/// forgets the name. In memory: per collector process.
#[derive(Default)]
pub struct LoginThrottle {
    map: std::sync::Mutex<std::collections::HashMap<String, (u32, u64)>>,
}

pub const FREE_FAILURES: u32 = 5;
pub const MAX_WAIT_SECS: u64 = 300;
/// Names remembered before the oldest failures are forgotten.
const MAX_NAMES: usize = 100_000;

impl LoginThrottle {
    /// Seconds `name` must still wait at `now` (0: may try).
    pub fn wait_secs(&self, name: &str, now_unix_ms: u64) -> u64 {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&(failures, last)) = map.get(name) else {
            return 0;
        };
        if failures < FREE_FAILURES {
            return 0;
        }
        let wait_ms = (1u64 << (failures - FREE_FAILURES).min(16)).min(MAX_WAIT_SECS) * 1000;
        (last + wait_ms).saturating_sub(now_unix_ms).div_ceil(1000)
    }

    pub fn failed(&self, name: &str, now_unix_ms: u64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_NAMES && !map.contains_key(name) {
            map.clear();
        }
        let e = map.entry(name.to_string()).or_insert((0, 0));
        e.0 = e.0.saturating_add(1);
        e.1 = now_unix_ms;
    }

    pub fn succeeded(&self, name: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_as_argon2id_and_verify() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse battern", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(matches!(
            hash_password("short"),
            Err(PasswordError::TooShort)
        ));
    }

    #[test]
    fn failed_logins_back_off_per_name() {
        let t = LoginThrottle::default();
        for i in 0..FREE_FAILURES {
            assert_eq!(t.wait_secs("ana", 1000), 0, "attempt {i}");
            t.failed("ana", 1000);
        }
        assert_eq!(t.wait_secs("ana", 1000), 1);
        assert_eq!(t.wait_secs("ana", 2000), 0);
        t.failed("ana", 2000);
        assert_eq!(t.wait_secs("ana", 2000), 2);
        assert_eq!(t.wait_secs("bob", 2000), 0, "per name");
        for _ in 0..30 {
            t.failed("ana", 5000);
        }
        assert_eq!(t.wait_secs("ana", 5000), MAX_WAIT_SECS, "capped");
        t.succeeded("ana");
        assert_eq!(t.wait_secs("ana", 5000), 0);
    }

    #[test]
    fn cookies_are_read_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; aupwatch_session=00ff; b=<x>".parse().expect("header"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("00ff"));
        assert_eq!(cookie(&h, "b"), None, "not hex");
        assert_eq!(cookie(&h, "c"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
