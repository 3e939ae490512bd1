//! Outbound HTTP to third-party APIs (Webex, Cortex XSOAR, CrowdStrike Falcon): one URL policy
//! and one client setup, so every connector that carries a credential treats it the same way.
//!
//! - [`api_url`]: `https`, or plain `http` only to this machine (tests and local recorders).
//! - [`api_client`]: no redirects (a redirect could carry the token to another host) and a
//!   timeout on every request.
//!
//! Stateless: nothing here outlives a call.

use std::time::Duration;

/// Why an API's address or client is refused.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Not a URL at all.
    #[error("{key} {url:?} is not a URL: {reason}")]
    NotUrl {
        /// The setting.
        key: String,
        /// Its value.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// Plain http to another machine: a credential would travel in clear.
    #[error("{key} {url:?} must be https (plain http only to this machine)")]
    NotHttps {
        /// The setting.
        key: String,
        /// Its value.
        url: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Parses `url` (named `key` in messages) and checks it is https, or http to loopback.
pub(crate) fn api_url(key: &str, url: &str) -> Result<reqwest::Url, OutboundError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| OutboundError::NotUrl {
        key: key.to_owned(),
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(parsed)
    } else {
        Err(OutboundError::NotHttps {
            key: key.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// A client for one API: no redirects, `timeout_ms` per request (at least 1 ms).
pub(crate) fn api_client(timeout_ms: u64) -> Result<reqwest::Client, OutboundError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(timeout_ms.max(1)))
        .build()
        .map_err(OutboundError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        assert!(api_url("x.url", "https://api.example.com/v1").is_ok());
        assert!(api_url("x.url", "http://127.0.0.1:9/v1").is_ok());
        assert!(api_url("x.url", "http://localhost/v1").is_ok());
        assert!(api_url("x.url", "http://[::1]:9/v1").is_ok());
        let refused = api_url("x.url", "http://api.example.com")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("x.url") && refused.contains("must be https"),
            "{refused}"
        );
        assert!(
            api_url("x.url", "not a url")
                .unwrap_err()
                .to_string()
                .contains("not a URL")
        );
    }
}
