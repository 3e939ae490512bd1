//! The ways in a fault and attack campaign found, each closed: password guessing, a cookie that
//! outlived its sign-out, silent connections held open, missing security headers, an open
//! `/metrics`, and alert times from year 1900 or 9999. Against the runtime's own HTTP server
//! (a real TCP client, reqwest), over real SQLite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use std::time::{Duration, Instant};

use soc_runtime::app::config::Config;
use soc_runtime::app::runtime::Runtime;
use soc_runtime::approvals::ApproverConfig;
use soc_runtime::secret::Secret;
use soc_runtime::supervisor::RuntimeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "tulip quarry anchor violet";
const TOKEN: &str = "scrape-token-0123456789";

fn config(dir: &std::path::Path, password: &str) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.approvals.session_key = Some(Secret::new("a fixed key for the test's restarts"));
    config.approvals.approvers = vec![ApproverConfig {
        name: "ana".into(),
        password_hash: Some(soc_runtime::approvals::hash_password(password).unwrap()),
        roles: vec!["IR Lead On-Call".into()],
    }];
    config
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(http: &reqwest::Client, base: &str, password: &str) -> reqwest::Response {
    http.post(format!("{base}/login"))
        .form(&[("name", "ana"), ("password", password)])
        .send()
        .await
        .unwrap()
}

fn session_of(response: &reqwest::Response) -> String {
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn status_with_cookie(http: &reqwest::Client, url: &str, cookie: &str) -> u16 {
    http.get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_throttled_and_audited_and_a_sign_out_ends_every_copy_of_the_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(config(dir.path(), PASSWORD), RuntimeOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    let http = client();

    // Five wrong passwords are answered as wrong; from the sixth the account is locked, and
    // while locked even the right password is not checked.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&http, &base, "wrong guess number").await.status(),
            401
        );
    }
    let locked = sign_in(&http, &base, "wrong guess number").await;
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many failed sign-ins")
    );
    assert_eq!(sign_in(&http, &base, PASSWORD).await.status(), 429);
    // The lock doubles: the next failure after it waits 2 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = sign_in(&http, &base, "wrong guess number").await;
    assert_eq!(again.status(), 429);
    assert_eq!(again.headers()["retry-after"], "2");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let signed = sign_in(&http, &base, PASSWORD).await;
    assert_eq!(
        signed.status(),
        303,
        "the right password once the lock ends"
    );
    let cookie = session_of(&signed);

    // Each failure is in the store's audit, with the address it came from.
    let store = soc_runtime::store::Store::open(&soc_runtime::store::file_for(
        &dir.path().join("data"),
        "memory",
    ))
    .await
    .unwrap();
    let failures: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, address, reason FROM sign_in_failures ORDER BY at_ms")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(failures.len(), 7, "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|f| f == &("ana".into(), "127.0.0.1".into(), "wrong_password".into()))
    );

    // A copy of the cookie taken before the sign-out stops working with it.
    let copy = cookie.clone();
    let approvals = format!("{base}/approvals");
    assert_eq!(status_with_cookie(&http, &approvals, &copy).await, 200);
    let out = http
        .post(format!("{base}/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(status_with_cookie(&http, &approvals, &copy).await, 303);
    let metrics = http
        .get(format!("{base}/metrics"))
        .header("cookie", session_of(&sign_in(&http, &base, PASSWORD).await))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("soc_sign_ins_total{outcome=\"failed\"} 7"),
        "{metrics}"
    );
    assert!(metrics.contains("soc_sign_ins_total{outcome=\"locked\"} 1"));
    assert!(metrics.contains("soc_sessions_revoked_total 1"));
    runtime.shutdown().await;

    // Revocations outlive a restart; a new password ends the sessions of the old one.
    let other = sign_in_after_restart(dir.path(), PASSWORD, &copy).await;
    assert_eq!(other.0, 303, "revoked before the restart, revoked after");
    let fresh = other.1;
    let changed = sign_in_after_restart(dir.path(), "a brand new passphrase here", &fresh).await;
    assert_eq!(changed.0, 303, "a password change ends the old sessions");
    store.close().await;
}

/// Restarts with `password` configured: the status of `/approvals` with `cookie`, and a fresh
/// session cookie signed in before the restart's end.
async fn sign_in_after_restart(
    dir: &std::path::Path,
    password: &str,
    cookie: &str,
) -> (u16, String) {
    let runtime = Runtime::start(config(dir, password), RuntimeOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    let http = client();
    let status = status_with_cookie(&http, &format!("{base}/approvals"), cookie).await;
    let signed = sign_in(&http, &base, password).await;
    assert_eq!(signed.status(), 303);
    let fresh = session_of(&signed);
    assert_eq!(
        status_with_cookie(&http, &format!("{base}/approvals"), &fresh).await,
        200
    );
    runtime.shutdown().await;
    (status, fresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_metrics_needs_a_token_once_people_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut with_token = config(dir.path(), PASSWORD);
    with_token.http.metrics_token = Some(Secret::new(TOKEN));
    let runtime = Runtime::start(with_token, RuntimeOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    let http = client();

    for path in ["/login", "/", "/healthz", "/approvals"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    // The sign-in page's own style block is allowed by its hash, and nothing else.
    let login = http.get(format!("{base}/login")).send().await.unwrap();
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = login.text().await.unwrap();
    let css = body
        .split("<style>")
        .nth(1)
        .and_then(|s| s.split("</style>").next())
        .unwrap();
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(css));
    assert!(
        csp.contains(&format!("style-src 'sha256-{hash}';")),
        "{csp}"
    );

    // /metrics: refused without the token, served with it.
    let bare = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    assert!(
        bare.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong = http
        .get(format!("{base}/metrics"))
        .bearer_auth("scrape-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let scraped = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("soc_http_connections_open")
    );
    runtime.shutdown().await;

    // Approvers and no token: only a signed-in session reads it.
    let runtime = Runtime::start(config(dir.path(), PASSWORD), RuntimeOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    let bare = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    let cookie = session_of(&sign_in(&http, &base, PASSWORD).await);
    assert_eq!(
        status_with_cookie(&http, &format!("{base}/metrics"), &cookie).await,
        200
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_and_the_connection_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), PASSWORD);
    config.http.header_read_timeout_ms = 1_000;
    config.http.max_connections = 4;
    config.http.metrics_token = Some(Secret::new(TOKEN));
    let runtime = Runtime::start(config, RuntimeOptions::default())
        .await
        .unwrap();
    let addr = runtime.http_addr().unwrap();

    // A connection that never sends its request's head is closed after the timeout.
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?} ({n} bytes)"
    );

    // A kept-alive connection idle after its answer is closed too.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the idle kept-alive connection was closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    // At the cap, a new connection is closed at once; once others end, they are served.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let quick = tokio::time::timeout(Duration::from_millis(500), over.read(&mut buf)).await;
    assert!(
        matches!(quick, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past the cap is closed at once: {quick:?}"
    );
    drop(held);
    let http = client();
    let metrics = common::wait_for("a free connection slot", Duration::from_secs(10), || {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{addr}/metrics"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?;
            r.text().await.ok()
        }
    })
    .await;
    assert!(
        metrics.contains("soc_http_connections_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
    runtime.shutdown().await;
}

#[test]
fn alert_times_from_parsers_defaults_or_the_far_future_are_refused_and_replays_stay_valid() {
    let line = |time: &str| {
        format!(
            r#"{{"ticket_id":"t-1","source":"wazuh","rule_id":"5710","rule_name":"sshd: attempt to login using a non-existent user","host":"h","src_ips":[],"first_seen":"{time}","last_seen":"{time}","alert_count":1}}"#
        )
    };
    for bad in [
        "9999-12-31T00:00:00Z",
        "1900-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
    ] {
        let e = soc_runtime::ingest::jsonl::parse_line(line(bad).as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("outside the accepted range"),
            "{bad}: {e}"
        );
    }
    let tomorrow = (chrono::Utc::now() + chrono::Duration::hours(23)).to_rfc3339();
    let in_two_days = (chrono::Utc::now() + chrono::Duration::hours(49)).to_rfc3339();
    assert!(soc_runtime::ingest::jsonl::parse_line(line(&tomorrow).as_bytes()).is_ok());
    assert!(soc_runtime::ingest::jsonl::parse_line(line(&in_two_days).as_bytes()).is_err());
    // AIT-ADS's own times (2022) replay as they are.
    assert!(
        soc_runtime::ingest::jsonl::parse_line(line("2022-01-21T10:00:00Z").as_bytes()).is_ok()
    );
}
