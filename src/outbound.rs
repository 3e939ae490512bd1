//! Outbound HTTP to third-party APIs (Webex, Cortex XSOAR, CrowdStrike Falcon): one URL policy
//! and one client setup, so every connector that carries a credential treats it the same way.
//!
//! - [`api_url`]: `https`, or plain `http` only to this machine (tests and local recorders).
//! - [`api_client`]: no redirects (a redirect could carry the token to another host) and a
//!   timeout on every request.
//!
//! Stateless: nothing here outlives a call.

use std::time::Duration;

/// Parses `url` (named `key` in messages) and checks it is https, or http to loopback.
pub(crate) fn api_url(key: &str, url: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("{key} {url:?} is not a URL: {e}"))?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(parsed)
    } else {
        Err(format!(
            "{key} {url:?} must be https (plain http only to this machine)"
        ))
    }
}

/// A client for one API: no redirects, `timeout_ms` per request (at least 1 ms).
pub(crate) fn api_client(timeout_ms: u64) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(timeout_ms.max(1)))
        .build()
        .map_err(|e| e.to_string())
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
        let refused = api_url("x.url", "http://api.example.com").unwrap_err();
        assert!(
            refused.contains("x.url") && refused.contains("must be https"),
            "{refused}"
        );
        assert!(
            api_url("x.url", "not a url")
                .unwrap_err()
                .contains("not a URL")
        );
    }
}
