//! The analyst's console over HTTP (a real runtime, a real client): case pages need a sign-in
//! once approvers exist, queues filter in the query and refuse bad filters with a 400, a
//! disposition needs its own CSRF token (an approval's does not pass), and an action's blast
//! radius counts the other cases on its target at the site.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "tests: a failure should fail loudly"
)]

mod common;

use std::time::Duration;

use soc_runtime::app::config::Config;
use soc_runtime::approvals::{self, ApproverConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_filter_cases_pages_need_a_sign_in_and_dispositions_their_own_token() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    // 300 synthetic alerts: source addresses repeat every 250 tickets.
    let mut config = Config {
        data_dir: dir.path().join("data"),
        alerts: Some(common::synthetic_feed(dir.path(), "con", 300)),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.calendar.enabled = false;
    config.approvals.approvers = vec![ApproverConfig {
        name: "ana".into(),
        password_hash: Some(approvals::hash_password("tulip quarry anchor violet").unwrap()),
        roles: vec!["IR Lead On-Call".into(), "SOC Shift Lead".into()],
    }];
    let (runtime, base, store) = common::start_serving(config).await;
    let pool = store.pool().clone();
    common::wait_for("every case folded", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cases")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n == 300).then_some(())
        }
    })
    .await;
    // Wait for the roles to finish the escalated cases too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Not signed in: the case page and the queues send to the sign-in page.
    for path in ["/cases/con-00000", "/queues"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login?next=")
        );
    }
    let signed = http
        .post(format!("{base}/login"))
        .form(&[("name", "ana"), ("password", "tulip quarry anchor violet")])
        .send()
        .await
        .unwrap();
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .header("cookie", cookie.clone())
            .send()
    };

    // Bad filters are refused with the reason.
    for (query, why) in [
        ("severity=SEV-9", "severity must be"),
        ("age_h=soon", "age_h must be"),
    ] {
        let r = get(format!("/queues?{query}")).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert!(r.text().await.unwrap().contains(why));
    }
    // The escalated queue holds the escalated cases without a disposition; filters narrow it.
    let (escalated,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cases WHERE escalated = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(escalated > 0);
    let rows = |page: &str| page.matches("<tr class=\"queued\">").count() as i64;
    let all = get("/queues".into()).await.unwrap().text().await.unwrap();
    assert_eq!(rows(&all), escalated.min(200), "escalated queue");
    let elsewhere = get("/queues?site=elsewhere".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&elsewhere), 0);
    assert!(elsewhere.contains("Nothing waits for a decision."));
    let (sev3,): (i64,) = sqlx::query_as(
        "SELECT COUNT(DISTINCT ticket) FROM case_events WHERE kind = 'IRPlan' \
         AND json_extract(body, '$.body.severity') = 'SEV-3'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let filtered = get("/queues?severity=SEV-3".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&filtered), sev3.min(200));

    // The case page of an escalated case, and its disposition form's token.
    let (ticket,): (String,) =
        sqlx::query_as("SELECT ticket FROM proposals ORDER BY ticket LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let page = get(format!("/cases/{ticket}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in [
        "id=\"plan\"",
        "id=\"proposals\"",
        "id=\"trail\"",
        "id=\"disposition-form\"",
    ] {
        assert!(page.contains(id), "{id} missing");
    }
    let token = |page: &str| {
        let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
        page[at..at + 64].to_owned()
    };
    let disposition_token = token(&page);
    // The approval form's token for one of its actions does not pass for the disposition,
    // nor the other way round.
    let proposal = approvals::for_ticket(&pool, &ticket)
        .await
        .unwrap()
        .remove(0);
    let action_path = format!(
        "/approvals/{}",
        proposal.proposed.action_id.replace('/', "%2F")
    );
    let confirm = get(action_path.clone())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let decision_token = token(&confirm);
    assert!(confirm.contains("id=\"blast-radius\""));
    let post = |path: String, form: Vec<(&'static str, String)>| {
        http.post(format!("{base}{path}"))
            .header("cookie", cookie.clone())
            .form(&form)
            .send()
    };
    let disposition = |csrf: String| {
        vec![
            ("classification", "false_positive".to_owned()),
            ("reason", "lab traffic".to_owned()),
            ("csrf", csrf),
        ]
    };
    let crossed = post(
        format!("/cases/{ticket}/disposition"),
        disposition(decision_token.clone()),
    )
    .await
    .unwrap();
    assert_eq!(crossed.status(), 403);
    let crossed = post(
        format!("{action_path}/decision"),
        vec![
            ("decision", "reject".to_owned()),
            ("reason", "x".to_owned()),
            ("csrf", disposition_token.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(crossed.status(), 403);
    let missing_reason = post(
        format!("/cases/{ticket}/disposition"),
        vec![
            ("classification", "false_positive".to_owned()),
            ("csrf", disposition_token.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(missing_reason.status(), 400);
    let recorded = post(
        format!("/cases/{ticket}/disposition"),
        disposition(disposition_token.clone()),
    )
    .await
    .unwrap();
    assert_eq!(recorded.status(), 303);
    let again = post(
        format!("/cases/{ticket}/disposition"),
        disposition(disposition_token),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 409);
    // Disposed of: it leaves the escalated queue (its proposals still wait for a decision).
    let after = get("/queues".into()).await.unwrap().text().await.unwrap();
    let section = |page: &str, id: &str| {
        let start = page.find(&format!("<section id=\"{id}\"")).unwrap();
        let end = page[start..].find("</section>").unwrap() + start;
        page[start..end].to_owned()
    };
    let link = format!("href=\"/cases/{ticket}\"");
    assert!(!section(&after, "escalated-queue").contains(&link));
    assert!(section(&after, "approval-queue").contains(&link));
    assert_eq!(rows(&after), rows(&all) - 1);

    // Blast radius: the proposal's target (a source address) is shared by the ticket 250
    // later, at the same site.
    let block = approvals::for_ticket(&pool, "con-00000")
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.proposed.step.action == "block_ip")
        .expect("con-00000 (an ET EXPLOIT title from outside) proposes a block");
    let radius = soc_runtime::memory::case_view::blast_radius(
        &pool,
        &block.proposed.step.action,
        &block.proposed.step.target,
        &block.proposed.case,
    )
    .await
    .unwrap();
    // A documentation address (203.0.113.0/24) is not an indicator case memory keeps: the
    // page says the radius is unknown rather than "no other case".
    assert_eq!(radius, None, "{}", block.proposed.step.target);
    // An internal address, scoped by site: con-00250 shares 10.0.0.1 with con-00000.
    let internal = soc_runtime::memory::case_view::blast_radius(
        &pool,
        "isolate_host",
        "10.0.0.1",
        &block.proposed.case,
    )
    .await
    .unwrap();
    assert_eq!(internal, Some(1));
    let host_radius = soc_runtime::memory::case_view::blast_radius(
        &pool,
        "isolate_host",
        "host-0",
        &soc_runtime::proto::CaseContext {
            ticket: "con-00000".into(),
            site: Some("synthetic".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // host-N repeats every 17 tickets: 0, 17, ..., 289 are 18 cases, 17 others.
    assert_eq!(host_radius, Some(17));
    let account = soc_runtime::memory::case_view::blast_radius(
        &pool,
        "disable_account",
        "alice",
        &soc_runtime::proto::CaseContext::default(),
    )
    .await
    .unwrap();
    assert_eq!(account, None, "not indexed by account: said, not guessed");
    runtime.shutdown().await;
    store.close().await;
}
