//! The browser session's cookie: reading it from a request, and the CSRF and Origin checks that
//! make a cookie safe to act on (the web UI's login and logout are in `web_session.rs`).

use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use sha2::{Digest as _, Sha256};

use crate::http::error::ApiError;

/// The cookie's name; the `__Host-` prefix makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`, so no sibling host can plant or read it.
pub const COOKIE: &str = "__Host-tether_session";
/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session: one-way from the session token, so it needs no storage and
/// reveals nothing about the token.
pub fn csrf_token(session_token: &str) -> String {
    hex::encode(Sha256::digest(format!("tether-csrf\0{session_token}").as_bytes()))
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    // Constant time for equal lengths: the comparison must not leak how much matched.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session token from the request's cookie, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Whether `Origin` names the hub itself (`https://` + the `Host` the browser asked for).
pub fn origin_matches(headers: &HeaderMap) -> Option<bool> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Some(host.is_some_and(|host| origin.eq_ignore_ascii_case(&format!("https://{host}"))))
}

pub fn refuse(why: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, why)
}

/// The hook for [`crate::service::auth`]: the session token of a cookie-authenticated request that passed
/// the browser checks (Origin, CSRF); `Ok(None)` when there is no cookie.
pub fn cookie_session(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(token) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    let path = parts.uri.path();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    match origin_matches(&parts.headers) {
        Some(true) => {}
        Some(false) => {
            tracing::warn!("refused a cross-origin browser request to {path}");
            return Err(refuse("cross-origin request refused"));
        }
        None if is_upgrade => {
            tracing::warn!("refused a browser WebSocket upgrade to {path} without Origin");
            return Err(refuse(
                "a WebSocket upgrade with a session cookie needs an Origin",
            ));
        }
        None => {}
    }
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !same_bytes(sent, csrf_token(&token).as_bytes()) {
            tracing::warn!("refused a browser request to {path}: missing or wrong CSRF token");
            return Err(refuse("missing or wrong CSRF token"));
        }
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder()
            .method(method)
            .uri("/api/management/v1/devices");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    const COOKIE_HEADER: &str = "other=1; __Host-tether_session=tts_secret";

    #[test]
    fn no_cookie_means_no_browser_session() {
        assert_eq!(cookie_session(&parts(Method::POST, &[])).unwrap(), None);
    }

    #[test]
    fn state_changes_need_the_csrf_token() {
        let cookie = ("cookie", COOKIE_HEADER);
        assert!(cookie_session(&parts(Method::POST, &[cookie])).is_err());
        assert!(cookie_session(&parts(Method::POST, &[cookie, ("x-csrf-token", "nope")])).is_err());
        let good = csrf_token("tts_secret");
        let token = cookie_session(&parts(Method::POST, &[cookie, ("x-csrf-token", &good)])).unwrap();
        assert_eq!(token.as_deref(), Some("tts_secret"));
        assert!(cookie_session(&parts(Method::GET, &[cookie])).unwrap().is_some());
    }

    #[test]
    fn websocket_upgrades_need_the_hubs_own_origin() {
        let cookie = ("cookie", COOKIE_HEADER);
        let upgrade = ("upgrade", "websocket");
        let host = ("host", "hub.example:8443");
        assert!(cookie_session(&parts(Method::GET, &[cookie, upgrade, host])).is_err());
        let evil = ("origin", "https://evil.example");
        assert!(cookie_session(&parts(Method::GET, &[cookie, upgrade, host, evil])).is_err());
        let own = ("origin", "https://hub.example:8443");
        assert!(
            cookie_session(&parts(Method::GET, &[cookie, upgrade, host, own]))
                .unwrap()
                .is_some()
        );
    }
}
