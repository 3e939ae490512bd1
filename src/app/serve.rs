//! Serving HTTP/1.1 connections with limits: a header-read timeout (which also closes idle
//! keep-alive connections: the wait for the next request's head is timed the same way), a
//! whole-request timeout, a cap on open connections, and security headers on every answer.
//!
//! `axum::serve` has none of these knobs, so connections are accepted here and each is served
//! by hyper with a timer. A connection past the cap is closed at once and counted. On shutdown
//! the listener closes first, then open connections finish their request in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The limits of the HTTP server (`[http]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest wait for a request's head, also between requests on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Longest a request may take, its body included.
    pub request_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Connection counts since start, for `/metrics` and the health report.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Requests answered 408 because they took longer than the request timeout.
    pub timed_out: AtomicU64,
}

/// Largest page whose inline styles are hashed into its CSP (pages are built in memory).
const MAX_PAGE: usize = 32 << 20;

/// Serves `app` on `listener` until `shutdown`, within `limits`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Each connection's task lives in this set: they end with the server.
    let mut connections = JoinSet::new();
    let mut refused_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept an http connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            if !refused_logged {
                refused_logged = true;
                tracing::warn!(
                    max = limits.max_connections,
                    "http connections at their cap (http.max_connections): new ones are closed \
                     at once until some end"
                );
            }
            drop(stream);
            continue;
        };
        if slots.available_permits() > limits.max_connections / 2 {
            refused_logged = false;
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            tower::ServiceExt::oneshot(router.clone(), request.map(Body::new))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let stats = stats.clone();
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
}

/// Middleware: the request timeout, then security headers on the answer. Pages get a CSP that
/// allows exactly their own inline `<style>` blocks, by hash; nothing else runs or loads.
pub(crate) async fn guard(
    axum::extract::State(state): axum::extract::State<(Duration, Arc<ConnStats>)>,
    request: Request,
    next: Next,
) -> Response {
    let (timeout, stats) = state;
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request took longer than {} s (http.request_timeout_ms)\n",
                    timeout.as_secs()
                ),
            )
                .into_response()
        }
    };
    let (mut parts, body) = response.into_parts();
    let html = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let (csp, body) = if html {
        match axum::body::to_bytes(body, MAX_PAGE).await {
            Ok(bytes) => (page_policy(&bytes), Body::from(bytes)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a page to hash its styles");
                return (StatusCode::INTERNAL_SERVER_ERROR, "page too large\n").into_response();
            }
        }
    } else {
        (
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'".to_owned(),
            body,
        )
    };
    let headers = &mut parts.headers;
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if html {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Response::from_parts(parts, body)
}

/// A page's CSP: its own inline style blocks by hash, images from itself or inline, forms to
/// itself, no scripts, no frames around it.
fn page_policy(page: &[u8]) -> String {
    let mut styles = String::new();
    for css in style_blocks(page) {
        let digest = Sha256::digest(css);
        styles.push_str(" 'sha256-");
        styles.push_str(&base64::engine::general_purpose::STANDARD.encode(digest));
        styles.push('\'');
    }
    if styles.is_empty() {
        styles.push_str(" 'none'");
    }
    format!(
        "default-src 'none'; style-src{styles}; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The contents of each `<style>` element of a page.
fn style_blocks(page: &[u8]) -> Vec<&[u8]> {
    let mut blocks = Vec::new();
    let mut rest = page;
    while let Some(open) = find(rest, b"<style>") {
        let after = &rest[open + b"<style>".len()..];
        let Some(close) = find(after, b"</style>") else {
            break;
        };
        blocks.push(&after[..close]);
        rest = &after[close..];
    }
    blocks
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_policy_allows_exactly_its_own_styles() {
        let page = b"<html><head><style>b{color:red}</style></head><style>i{}</style></html>";
        let policy = page_policy(page);
        // sha256("b{color:red}") and sha256("i{}"), as browsers compute them.
        let hash =
            |css: &[u8]| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(css));
        assert!(policy.contains(&format!("'sha256-{}'", hash(b"b{color:red}"))));
        assert!(policy.contains(&format!("'sha256-{}'", hash(b"i{}"))));
        assert!(!policy.contains("unsafe-inline"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(page_policy(b"<p>no styles</p>").contains("style-src 'none'"));
    }
}
