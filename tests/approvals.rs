//! Approvals over a real store: proposals folded from a real run's audit, decisions recorded
//! once with their `ActionDecision` in the outbox, and the relay publishing it exactly once to
//! a bus, also after a crash between the store write and the publish.

#![allow(
    clippy::disallowed_methods,
    reason = "tests own and abort the tasks they spawn"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use soc_runtime::app::config::Config;
use soc_runtime::approvals::{self, Approver, DecideError};
use soc_runtime::bus::{Bus, BusConfig, Topic};
use soc_runtime::proto::ApprovalDecision;

fn approver(name: &str, role: &str) -> Approver {
    Approver {
        name: name.into(),
        roles: vec![role.into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_decided_once_by_its_role_and_published_once() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    // Synthetic alerts with outside sources: the IR Lead proposes blocking them.
    let feed = common::synthetic_feed(dir.path(), "decide", 300);
    let (report, store_path) = common::run_until_idle(dir.path(), feed).await;
    let proposed = report.summary.actions_proposed;
    assert!(proposed > 1);
    let store = soc_runtime::store::Store::open(&store_path).await.unwrap();
    let pool = store.pool();
    // Every proposal the IR Lead published is in the store, undecided.
    let pending = approvals::list(pool, true, 100_000).await.unwrap();
    assert_eq!(pending.len() as u64, proposed);
    assert!(pending.iter().all(|p| p.proposed_by == "ir_lead"));
    let first = &pending[0].proposed;
    let role = first.approver_role.clone();
    let now = pending[0].proposed_at_ms + 1000;

    assert!(matches!(
        approvals::decide(
            pool,
            "nope/step",
            &approver("ana", &role),
            ApprovalDecision::Approved,
            "",
            now
        )
        .await,
        Err(DecideError::NotFound(_))
    ));
    let wrong = approver("bob", "Somebody Else");
    assert!(matches!(
        approvals::decide(
            pool,
            &first.action_id,
            &wrong,
            ApprovalDecision::Approved,
            "",
            now
        )
        .await,
        Err(DecideError::Forbidden { .. })
    ));
    // Two approvers race: exactly one decision is recorded, the other sees it.
    let (ana, eve) = (approver("ana", &role), approver("eve", &role));
    let (a, b) = tokio::join!(
        approvals::decide(
            pool,
            &first.action_id,
            &ana,
            ApprovalDecision::Approved,
            "contain it",
            now
        ),
        approvals::decide(
            pool,
            &first.action_id,
            &eve,
            ApprovalDecision::Rejected,
            "false alarm",
            now
        ),
    );
    let (won, lost) = match (a, b) {
        (Ok(d), Err(DecideError::AlreadyDecided(seen)))
        | (Err(DecideError::AlreadyDecided(seen)), Ok(d)) => (d, seen),
        other => panic!("one decision must win: {other:?}"),
    };
    assert_eq!(won, lost, "the loser is shown the first decision");
    let stored = approvals::proposal(pool, &first.action_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.decision.as_ref(), Some(&won));
    // Past its expiry a proposal cannot be decided.
    let other = &pending[1].proposed;
    assert!(matches!(
        approvals::decide(
            pool,
            &other.action_id,
            &approver("ana", &other.approver_role),
            ApprovalDecision::Approved,
            "",
            other.expires_at_ms + 1
        )
        .await,
        Err(DecideError::Expired(_))
    ));
    assert_eq!(
        approvals::list(pool, true, 100_000).await.unwrap().len() as u64,
        proposed - 1
    );

    // The relay publishes the decision, with executed = false, exactly once: a crash after the
    // publish but before marking it sent (the row put back to unsent) publishes nothing new.
    let bus = Bus::memory(BusConfig::default()).unwrap();
    assert_eq!(
        approvals::relay(pool, &bus, 100, &approvals::executor::DryRun)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        approvals::relay(pool, &bus, 100, &approvals::executor::DryRun)
            .await
            .unwrap(),
        0
    );
    sqlx::query("UPDATE outbox SET sent_ms = NULL")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        approvals::relay(pool, &bus, 100, &approvals::executor::DryRun)
            .await
            .unwrap(),
        1
    );
    assert_eq!(bus.len(Topic::Actions).await.unwrap(), 1);
    let entries = bus
        .range(
            Topic::Actions,
            soc_runtime::bus::StreamId::ZERO,
            soc_runtime::bus::StreamId::MAX,
            10,
        )
        .await
        .unwrap();
    let envelope = entries[0].fields.decode_envelope().unwrap();
    let soc_runtime::proto::Event::ActionDecision(d) = envelope.event else {
        panic!("{envelope:?}")
    };
    assert_eq!(d.action_id, first.action_id);
    assert_eq!(d.decided_by, won.decided_by);
    assert!(!d.executed);
    // The decision survives a rebuild of the projection; the proposals come back from the
    // audit.
    store
        .reset(&soc_runtime::store::projection_name(&bus))
        .await
        .unwrap();
    assert!(
        approvals::proposal(pool, &first.action_id)
            .await
            .unwrap()
            .is_none()
    );
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    store.close().await;
}

/// A response's status, `Location` and `Set-Cookie`, and its body.
struct Got {
    status: u16,
    location: String,
    cookie: String,
    body: String,
}

async fn got(r: reqwest::Response) -> Got {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (location, cookie) = (header("location"), header("set-cookie"));
    Got {
        status: r.status().as_u16(),
        location,
        cookie,
        body: r.text().await.unwrap(),
    }
}

/// `GET url` with a session cookie.
async fn get(http: &reqwest::Client, url: String, cookie: &str) -> Got {
    got(http.get(url).header("cookie", cookie).send().await.unwrap()).await
}

/// `POST url` with a session cookie and a form.
async fn post(http: &reqwest::Client, url: String, cookie: &str, form: &[(&str, &str)]) -> Got {
    got(http
        .post(url)
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap())
    .await
}

/// The value of hidden input `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .map(|i| i + marker.len())
        .expect("hidden field");
    body[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_pages_sign_in_confirm_once_and_refuse_the_rest() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    let hash = approvals::hash_password("correct horse").unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        alerts: Some(common::synthetic_feed(dir.path(), "ap", 24)),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.calendar.enabled = false;
    config.approvals.approvers = vec![
        soc_runtime::approvals::ApproverConfig {
            name: "ana".into(),
            password_hash: Some(hash.clone()),
            roles: vec!["IR Lead On-Call".into(), "SOC Shift Lead".into()],
        },
        soc_runtime::approvals::ApproverConfig {
            name: "bob".into(),
            password_hash: Some(hash),
            roles: vec!["Auditor".into()],
        },
    ];
    let (runtime, base, store) = common::start_serving(config).await;
    let pool = store.pool().clone();
    let pending = common::wait_for(
        "proposals folded",
        std::time::Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let p = approvals::list(&pool, true, 100).await.unwrap();
                (p.len() >= 2).then_some(p)
            }
        },
    )
    .await;
    let action = pending[0].proposed.action_id.clone();
    let encoded = action.replace('/', "%2F");
    let page_url = format!("{base}/approvals/{encoded}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Not signed in: the card's link leads to the sign-in page, and records nothing.
    let r = got(http
        .get(format!("{page_url}?decision=approve"))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(r.status, 303);
    assert!(
        r.location.starts_with("/login?next=%2Fapprovals%2F"),
        "{}",
        r.location
    );
    let login = |name: &'static str, password: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            got(http
                .post(format!("{base}/login"))
                .form(&[
                    ("name", name),
                    ("password", password),
                    ("next", "/approvals"),
                ])
                .send()
                .await
                .unwrap())
            .await
        }
    };
    let wrong = login("ana", "wrong").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong name or password"));
    assert_eq!(login("nobody", "correct horse").await.status, 401);
    let ana = login("ana", "correct horse").await;
    assert_eq!(ana.status, 303);
    assert!(ana.cookie.contains("HttpOnly") && ana.cookie.contains("SameSite=Strict"));
    let ana_cookie = ana.cookie.split(';').next().unwrap().to_owned();

    // The confirmation page: what, for whom, the banner, and a form; nothing recorded yet.
    let page = get(&http, format!("{page_url}?decision=approve"), &ana_cookie).await;
    assert_eq!(page.status, 200);
    let role = &pending[0].proposed.approver_role;
    assert!(page.body.contains(&format!(
        "Action required from: <strong id=\"approver-role\">{role}</strong>"
    )));
    assert!(page.body.contains("DEMO"));
    assert!(page.body.contains(&pending[0].proposed.case.ticket));
    assert!(
        approvals::proposal(&pool, &action)
            .await
            .unwrap()
            .unwrap()
            .decision
            .is_none()
    );
    let csrf = hidden(&page.body, "csrf");
    let approve = |cookie: String, csrf: String| {
        let http = http.clone();
        let url = format!("{page_url}/decision");
        async move {
            let form = [
                ("decision", "approve"),
                ("reason", "contain the scanner"),
                ("csrf", csrf.as_str()),
            ];
            post(&http, url, &cookie, &form).await
        }
    };
    // Forged and missing CSRF tokens are refused; so is a token of another action.
    assert_eq!(
        approve(ana_cookie.clone(), "00".repeat(32)).await.status,
        403
    );
    assert_eq!(approve(ana_cookie.clone(), String::new()).await.status, 403);
    // No session: 401.
    assert_eq!(approve(String::new(), csrf.clone()).await.status, 401);
    assert!(
        approvals::proposal(&pool, &action)
            .await
            .unwrap()
            .unwrap()
            .decision
            .is_none()
    );
    let done = approve(ana_cookie.clone(), csrf.clone()).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let decided = approvals::proposal(&pool, &action)
        .await
        .unwrap()
        .unwrap()
        .decision
        .unwrap();
    assert_eq!(decided.decided_by, "ana");
    assert_eq!(decided.reason, "contain the scanner");
    // A second submit: 409, showing the first decision.
    let again = approve(ana_cookie.clone(), csrf.clone()).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("Approved by ana"), "{}", again.body);

    // Someone signed in without the role sees the page read-only and cannot decide.
    let bob = login("bob", "correct horse").await;
    let bob_cookie = bob.cookie.split(';').next().unwrap().to_owned();
    let other = pending[1].proposed.action_id.replace('/', "%2F");
    let page = get(&http, format!("{base}/approvals/{other}"), &bob_cookie).await;
    assert!(
        page.body
            .contains("Read only: you (bob) do not hold the role"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("name=\"csrf\""));
    // Bob forges a form with a token of his own session: still 403 (no role).
    let ana_page = get(&http, format!("{base}/approvals/{other}"), &ana_cookie).await;
    let ana_csrf = hidden(&ana_page.body, "csrf");
    let stolen = post(
        &http,
        format!("{base}/approvals/{other}/decision"),
        &bob_cookie,
        &[("decision", "approve"), ("csrf", ana_csrf.as_str())],
    )
    .await;
    assert_eq!(stolen.status, 403, "ana's token is not bob's");

    // Expired: the proposal's time has passed (set in the store: waiting hours is not a test).
    let changed = sqlx::query("UPDATE proposals SET expires_at_ms = 1 WHERE action_id = ?")
        .bind(&pending[1].proposed.action_id)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    let stored = approvals::proposal(&pool, &pending[1].proposed.action_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.proposed.expires_at_ms, 1, "{stored:?}");
    let late = post(
        &http,
        format!("{base}/approvals/{other}/decision"),
        &ana_cookie,
        &[("decision", "reject"), ("csrf", ana_csrf.as_str())],
    )
    .await;
    assert_eq!(late.status, 410, "{}", late.body);
    let unknown = get(&http, format!("{base}/approvals/nope%2Fstep"), &ana_cookie).await;
    assert_eq!(unknown.status, 404);
    let list = get(&http, format!("{base}/approvals"), &ana_cookie).await;
    assert!(list.body.contains("Approved by ana"));

    // The decision is on the bus (relayed from the outbox), once, never executed.
    let bus = runtime.bus().clone();
    let decisions = common::wait_for(
        "the decision published",
        std::time::Duration::from_secs(30),
        || {
            let bus = bus.clone();
            async move {
                let found = common::audited_decisions(&bus).await;
                (!found.is_empty()).then_some(found)
            }
        },
    )
    .await;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].action_id, action);
    assert!(!decisions[0].executed);
    runtime.shutdown().await;
    store.close().await;
}

/// Serves the approval pages for `config` over a fresh store, recording peer addresses as
/// the runtime's server does; returns the base URL and the server task.
async fn serve_pages(
    dir: &std::path::Path,
    config: soc_runtime::approvals::ApprovalsConfig,
) -> (String, tokio::task::JoinHandle<()>) {
    serve_pages_secure(dir, config, false).await
}

/// [`serve_pages`], with `Secure` cookies or not.
async fn serve_pages_secure(
    dir: &std::path::Path,
    config: soc_runtime::approvals::ApprovalsConfig,
    secure: bool,
) -> (String, tokio::task::JoinHandle<()>) {
    let store = soc_runtime::store::Store::open(&dir.join("pages.db"))
        .await
        .unwrap();
    let web = soc_runtime::approvals::web::Web::new(store.pool().clone(), config, secure);
    let app = soc_runtime::approvals::web::routes(std::sync::Arc::new(web))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, server)
}

#[tokio::test]
async fn an_sso_identity_header_is_believed_only_from_a_configured_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let sso = |proxy: &str| soc_runtime::approvals::ApprovalsConfig {
        sso_header: "X-Auth-Request-Email".into(),
        sso_proxies: vec![proxy.parse().unwrap()],
        approvers: vec![soc_runtime::approvals::ApproverConfig {
            name: "ana@soc.example".into(),
            password_hash: None,
            roles: vec!["IR Lead On-Call".into()],
        }],
        ..soc_runtime::approvals::ApprovalsConfig::default()
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let as_ana = |base: &str| {
        http.get(format!("{base}/approvals"))
            .header("X-Auth-Request-Email", "ana@soc.example")
            .send()
    };

    // From the proxy (this test is 127.0.0.1): signed in, with her configured role.
    let (base, server) = serve_pages(dir.path(), sso("127.0.0.1")).await;
    let page = as_ana(&base).await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(
        body.contains("Signed in as ana@soc.example (IR Lead On-Call)"),
        "{body}"
    );
    // The header twice (a proxy appending to a client's own): not believed.
    let twice = http
        .get(format!("{base}/approvals"))
        .header("X-Auth-Request-Email", "mallory@soc.example")
        .header("X-Auth-Request-Email", "ana@soc.example")
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 303);
    // Without the header: the sign-in page; and an SSO-only approver has no password here.
    let plain = http.get(format!("{base}/approvals")).send().await.unwrap();
    assert_eq!(plain.status(), 303);
    let login = http
        .post(format!("{base}/login"))
        .form(&[("name", "ana@soc.example"), ("password", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    server.abort();

    // The same header from an address that is not the proxy is ignored.
    let (base, server) = serve_pages(dir.path(), sso("10.20.30.40")).await;
    let page = as_ana(&base).await.unwrap();
    assert_eq!(page.status(), 303, "a client cannot name itself");
    server.abort();

    // A config naming the header without proxies is refused.
    let mut unsafe_config = sso("127.0.0.1");
    unsafe_config.sso_proxies.clear();
    assert!(
        unsafe_config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sso_proxies")
    );
}

#[tokio::test]
async fn cookies_are_secure_behind_tls_sign_out_ends_the_cookie_and_no_approvers_says_how_to_add_one()
 {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let config = soc_runtime::approvals::ApprovalsConfig {
        approvers: vec![soc_runtime::approvals::ApproverConfig {
            name: "ana".into(),
            password_hash: Some(
                soc_runtime::approvals::hash_password("tulip quarry anchor violet").unwrap(),
            ),
            roles: vec!["SOC Shift Lead".into()],
        }],
        ..soc_runtime::approvals::ApprovalsConfig::default()
    };
    let sign_in = |base: String| {
        http.post(format!("{base}/login"))
            .form(&[("name", "ana"), ("password", "tulip quarry anchor violet")])
            .send()
    };
    for secure in [true, false] {
        let (base, server) = serve_pages_secure(dir.path(), config.clone(), secure).await;
        let signed = sign_in(base.clone()).await.unwrap();
        assert_eq!(signed.status(), 303);
        let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert_eq!(cookie.ends_with("; Secure"), secure, "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let out = http.post(format!("{base}/logout")).send().await.unwrap();
        assert_eq!(out.status(), 303);
        assert_eq!(out.headers()["location"], "/login?signed_out=1");
        let cleared = out.headers()["set-cookie"].to_str().unwrap();
        assert!(cleared.starts_with("soc_session=;") && cleared.contains("Max-Age=0"));
        assert_eq!(cleared.ends_with("; Secure"), secure, "{cleared}");
        let page = http
            .get(format!("{base}/login?signed_out=1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("You are signed out."));
        server.abort();
    }

    // Nobody can sign in: the approval links lead to a page that says so, and how to fix it.
    let (base, server) = serve_pages(
        dir.path(),
        soc_runtime::approvals::ApprovalsConfig::default(),
    )
    .await;
    let link = http
        .get(format!("{base}/approvals/t-1%2Fblock-ip-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 303);
    let to = link.headers()["location"].to_str().unwrap().to_owned();
    let page = http.get(format!("{base}{to}")).send().await.unwrap();
    assert_eq!(page.status(), 503);
    let body = page.text().await.unwrap();
    assert!(body.contains("no approvers configured"), "{body}");
    assert!(body.contains("approvers hash-password") && body.contains("[[approvals.approvers]]"));
    assert!(
        !body.contains("id=\"sign-in\""),
        "no sign-in form that can never succeed"
    );
    server.abort();

    // The password policy, in NIST SP 800-63B's manner.
    use soc_runtime::approvals::check_password;
    assert!(
        check_password("short", "ana")
            .unwrap_err()
            .contains("at least 12")
    );
    assert!(
        check_password("password1234", "ana")
            .unwrap_err()
            .contains("common")
    );
    assert!(
        check_password("anaanaanaana", "ana").is_err(),
        "the name repeated"
    );
    assert!(check_password("tulip quarry anchor violet", "ana").is_ok());
    // No composition rules: a long passphrase of lower-case words is fine.
    assert!(check_password("correct battery mountain lighthouse", "ana").is_ok());
}
