//! The hub's HTTPS JSON API: one reqwest client over the same TLS trust as the WebSocket, and
//! error messages that carry the hub's own `{"error": ...}` text and the HTTP status.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use tether_proto::api::{ApiError, Device, DeviceList, DeviceQuery};

use crate::{
    failure,
    hub::{Authenticated, Hub, HubOptions, authenticated},
};

/// A refusal from the hub: the status and its error message.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} (HTTP {}", self.message, self.status.as_u16())?;
        if self.status == StatusCode::UNAUTHORIZED {
            write!(formatter, "; log in again with `tether login`")?;
        }
        write!(formatter, ")")
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// Reads the hub's `{"error": ...}`; a body that is not one (a proxy's HTML page, say) is
    /// shown as text, shortened, so the operator still sees something.
    pub fn from_body(status: StatusCode, body: &[u8]) -> HttpError {
        let message = match serde_json::from_slice::<ApiError>(body) {
            Ok(error) => error.error,
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("request refused")
                        .to_lowercase()
                } else {
                    text.chars().take(200).collect()
                }
            }
        };
        HttpError { status, message }
    }
}

/// A client for one hub, with or without a bearer token.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(hub: &Hub, token: Option<String>) -> Result<Api> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*hub.tls).clone())
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api {
            http,
            base: hub.url.to_string(),
            token,
        })
    }

    /// Sends one request and returns the response body of a success.
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| failure::unreachable(&self.base, &error.without_url()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| {
            failure::transport(format!(
                "reading the answer of the hub at {}: {}",
                self.base,
                failure::describe(&error.without_url())
            ))
        })?;
        if !status.is_success() {
            return Err(HttpError::from_body(status, &bytes).into());
        }
        Ok(bytes.to_vec())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.send(Method::GET, path, None).await?;
        decode(&body, path)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = self
            .send(Method::POST, path, Some(serde_json::to_vec(body)?))
            .await?;
        decode(&body, path)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = self
            .send(Method::PUT, path, Some(serde_json::to_vec(body)?))
            .await?;
        decode(&body, path)
    }

    /// A POST with a JSON body whose answer carries nothing the CLI needs (e.g. 204 No Content).
    pub async fn post_no_content<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        self.send(Method::POST, path, Some(serde_json::to_vec(body)?))
            .await
            .map(drop)
    }

    /// A POST whose answer carries nothing the CLI needs.
    pub async fn post_empty(&self, path: &str) -> Result<()> {
        self.send(Method::POST, path, None).await.map(drop)
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(Method::DELETE, path, None).await.map(drop)
    }

    /// All devices, or those with one status.
    pub async fn devices(&self, status: Option<&str>) -> Result<Vec<Device>> {
        let query = DeviceQuery {
            status: status.map(str::to_owned),
            ..DeviceQuery::default()
        };
        self.devices_where(&query).await
    }

    /// Every device that matches `query`'s filters.
    pub async fn devices_where(&self, query: &DeviceQuery) -> Result<Vec<Device>> {
        Ok(self.get::<DeviceList>(&query.path()).await?.devices)
    }
}

/// An API client for a command that needs a login (see [`authenticated`]).
pub fn authenticated_api(options: &HubOptions) -> Result<Api> {
    let login = authenticated(options)?;
    Api::new(&login.hub, Some(login.token))
}

/// An HTTP client for long answers read as they arrive (an audit export, a recording): no
/// whole-request timeout, which would cut a long answer off; only a silence limit.
pub fn streaming_client(login: &Authenticated) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls((*login.hub.tls).clone())
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

/// A GET whose answer is read as it arrives, on a [`streaming_client`] of its own.
pub async fn get_streamed(login: &Authenticated, path: &str) -> Result<reqwest::Response> {
    get_with(&streaming_client(login)?, login, path).await
}

/// Sends a GET on `client` and returns the response of a success (the hub's refusal as an error).
pub async fn get_with(
    client: &reqwest::Client,
    login: &Authenticated,
    path: &str,
) -> Result<reqwest::Response> {
    let base = login.hub.url.to_string();
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(&login.token)
        .send()
        .await
        .map_err(|error| failure::unreachable(&base, &error.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Err(HttpError::from_body(status, &body).into());
    }
    Ok(response)
}

fn decode<T: DeserializeOwned>(body: &[u8], path: &str) -> Result<T> {
    serde_json::from_slice(body).with_context(|| format!("unexpected answer from the hub to {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_the_hub_message_and_status() {
        let error = HttpError::from_body(StatusCode::NOT_FOUND, br#"{"error":"no such device"}"#);
        assert_eq!(error.to_string(), "no such device (HTTP 404)");
    }

    #[test]
    fn unauthorized_says_how_to_recover() {
        let error = HttpError::from_body(StatusCode::UNAUTHORIZED, br#"{"error":"token expired"}"#);
        assert_eq!(
            error.to_string(),
            "token expired (HTTP 401; log in again with `tether login`)"
        );
    }

    #[test]
    fn non_json_bodies_still_say_something() {
        let error = HttpError::from_body(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(error.to_string(), "bad gateway (HTTP 502)");
        let error = HttpError::from_body(StatusCode::BAD_GATEWAY, b"<html>upstream</html>");
        assert_eq!(error.message, "<html>upstream</html>");
    }
}
