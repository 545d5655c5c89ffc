//! The browser UI's files, embedded at build time (see `build.rs`), served with a strict
//! Content-Security-Policy (no inline scripts). Paths that name no file get the UI's page, so
//! links into the UI work; API paths that match no route stay JSON 404s.

use axum::{
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use crate::http::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Scripts and everything else from the hub only. Styles allow inline because xterm.js sizes
/// its rows with `<style>` elements; no script runs from anything but the hub's own files.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Shown when the hub was built without the UI (`web/dist` missing).
const PLACEHOLDER: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tether</title></head>\
<body><h1>Tether hub</h1><p>This hub was built without its web UI. Build it with \
<code>(cd web &amp;&amp; npm ci &amp;&amp; npm run build)</code>, then <code>cargo build</code> again \
(or run <code>scripts/demo</code>).</p></body></html>";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn find(path: &str) -> Option<&'static [u8]> {
    ASSETS
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, bytes)| *bytes)
}

/// The fallback handler: a UI file, the UI's page, or a JSON 404 under `/api/`.
pub async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        return ApiError::not_found(format!("no such endpoint: {method} {path}")).into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "the UI is read with GET").into_response();
    }
    let (name, bytes) = match find(path) {
        Some(bytes) if path != "/" => (path, bytes),
        _ => match find("/index.html") {
            Some(bytes) => ("/index.html", bytes),
            None => ("/index.html", PLACEHOLDER.as_bytes()),
        },
    };
    // Hashed asset names never change content; the page itself must always be fresh.
    let cache = if name.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn api_paths_stay_json_and_pages_carry_the_policy() {
        let missing = serve(Method::GET, Uri::from_static("/api/nothing")).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let page = serve(Method::GET, Uri::from_static("/devices")).await;
        assert_eq!(page.status(), StatusCode::OK);
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-eval"));
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}
