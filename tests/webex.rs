//! Webex against a local recorder of its API: a card per IR plan, retried through a Webex
//! outage without a duplicate; the feedback webhook, which checks the signature before it
//! parses anything, looks the action up, authorizes the person and records the disposition
//! once.

#![allow(
    clippy::disallowed_methods,
    reason = "tests own and abort the tasks they spawn"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "tests: a failure should fail loudly"
)]

mod common;

use std::time::Duration;

use common::webex::WebexRecorder;
use serde_json::json;
use soc_runtime::app::config::Config;
use soc_runtime::webex::webhook::sign;
use sqlx::Row;

const ROOM: &str = "Y2lzY29zcGFyazovL3VzL1JPT00vc29j";
const SECRET: &str = "webhook-secret-for-tests";

fn webex_config(recorder: &WebexRecorder) -> soc_runtime::webex::WebexConfig {
    soc_runtime::webex::WebexConfig {
        api_base: recorder.url(),
        room_id: ROOM.into(),
        bot_token: Some(soc_runtime::secret::Secret::new("bot-token-for-tests")),
        webhook_secret: Some(soc_runtime::secret::Secret::new(SECRET)),
        feedback_from: vec!["ana@soc.example".into()],
        retry_initial_ms: 50,
        retry_max_ms: 200,
        poll_ms: 50,
        ..soc_runtime::webex::WebexConfig::default()
    }
}

async fn post_hook(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, String) {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        request = request.header("X-Spark-Signature", s);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

fn notification(action_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "webhook-1", "name": "soc feedback", "resource": "attachmentActions",
        "event": "created", "actorId": "p-ana",
        "data": {"id": action_id, "type": "submit", "messageId": "msg-1", "personId": "p-ana",
                 "roomId": ROOM}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_survive_a_webex_outage_and_signed_feedback_is_recorded_once() {
    common::logs();
    let recorder = WebexRecorder::start().await;
    // Webex is down for the first three posts.
    recorder.fail_next(3);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        alerts: Some(common::synthetic_feed(dir.path(), "wx", 24)),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.calendar.enabled = false;
    config.webex = webex_config(&recorder);
    let (runtime, base, store) = common::start_serving(config).await;
    let pool = store.pool().clone();

    // Every IR plan's card is sent once, whatever the outage.
    let plans = common::wait_for("every plan's card sent", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let row = sqlx::query(
                "SELECT COUNT(*), SUM(status = 'sent'), SUM(attempts), \
                 (SELECT COUNT(*) FROM case_events WHERE kind = 'IRPlan') FROM cards",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            let (cards, sent, attempts, plans): (i64, Option<i64>, Option<i64>, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            (cards > 0 && sent == Some(cards) && plans == cards).then_some((cards, attempts))
        }
    })
    .await;
    let (cards, attempts) = plans;
    let messages = recorder.messages();
    assert_eq!(
        messages.len() as i64,
        cards,
        "one message per plan, none twice"
    );
    assert_eq!(
        recorder.posts() as i64,
        cards + 3,
        "three refused posts were retried"
    );
    assert_eq!(attempts, Some(cards + 3));
    for (auth, body) in &messages {
        assert_eq!(auth, "Bearer bot-token-for-tests");
        assert_eq!(body["roomId"], ROOM);
        let card = &body["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let text = card.to_string();
        assert!(text.contains("Action required from: **"), "{text}");
        assert!(body["markdown"].as_str().unwrap().contains("incident"));
    }
    // The first card sent is msg-1; its ticket is the card's.
    let ticket: String = sqlx::query("SELECT ticket FROM cards WHERE message_id = 'msg-1'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    // Its Approve button opens this runtime's confirmation page of a real proposal.
    let approve_urls: Vec<String> = messages[0].1["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["actions"].as_array())
        .flatten()
        .filter(|a| a["title"] == "Approve")
        .map(|a| a["url"].as_str().unwrap().to_owned())
        .collect();
    assert!(!approve_urls.is_empty());
    for url in &approve_urls {
        assert!(
            url.starts_with(&format!("{base}/approvals/{ticket}%2F")),
            "{url}"
        );
    }

    // The webhook.
    let hook = format!("{base}/webex/webhook");
    let http = reqwest::Client::new();
    recorder.add_person("p-ana", "ana@soc.example");
    recorder.add_person("p-eve", "eve@elsewhere.example");
    let benign = json!({"kind": "feedback", "disposition": "close"});
    recorder.add_action("act-1", "msg-1", "p-ana", ROOM, benign.clone());
    let body = notification("act-1");
    let good = sign(SECRET.as_bytes(), &body);

    // Refused with 401 before any parsing: a wrong, a missing, a stale signature. Not even a
    // lookup is made, and garbage with a bad signature is 401, not 400.
    assert_eq!(
        post_hook(&http, &hook, &body, Some(&"ab".repeat(20)))
            .await
            .0,
        401
    );
    assert_eq!(post_hook(&http, &hook, &body, None).await.0, 401);
    let mut altered = body.clone();
    let at = altered.len() / 2;
    altered[at] ^= 1;
    assert_eq!(post_hook(&http, &hook, &altered, Some(&good)).await.0, 401);
    assert_eq!(
        post_hook(&http, &hook, b"\xff not json", Some("00"))
            .await
            .0,
        401
    );
    assert_eq!(recorder.lookups(), 0);
    // Correctly signed garbage is a 400.
    let junk = b"not json";
    assert_eq!(
        post_hook(&http, &hook, junk, Some(&sign(SECRET.as_bytes(), junk)))
            .await
            .0,
        400
    );

    // Accepted: ana's "verdict wrong: benign" becomes the ticket's disposition.
    let (status, text) = post_hook(&http, &hook, &body, Some(&good)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("recorded: {ticket} close")),
        "{text}"
    );
    let disposition = sqlx::query("SELECT ground_truth, source FROM dispositions WHERE ticket = ?")
        .bind(&ticket)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(disposition.get::<String, _>(0), "close");
    assert_eq!(disposition.get::<String, _>(1), "webex:ana@soc.example");
    // A replay changes nothing and looks nothing up.
    let lookups = recorder.lookups();
    let (status, text) = post_hook(&http, &hook, &body, Some(&good)).await;
    assert_eq!((status, text.contains("already recorded")), (200, true));
    assert_eq!(recorder.lookups(), lookups);

    // Someone not in feedback_from, a press in another room, a message that is not one of
    // our cards: refused, nothing recorded.
    recorder.add_action(
        "act-2",
        "msg-1",
        "p-eve",
        ROOM,
        json!({"disposition": "escalate"}),
    );
    recorder.add_action("act-3", "msg-1", "p-ana", "b3RoZXItcm9vbQ", benign.clone());
    recorder.add_action("act-4", "msg-999", "p-ana", ROOM, benign);
    for (action, code) in [("act-2", 403), ("act-3", 403), ("act-4", 404)] {
        let body = notification(action);
        let (status, text) =
            post_hook(&http, &hook, &body, Some(&sign(SECRET.as_bytes(), &body))).await;
        assert_eq!(status, code, "{action}: {text}");
    }
    let feedback: Vec<(String, String)> =
        sqlx::query_as("SELECT action_id, disposition FROM feedback ORDER BY action_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(feedback, [("act-1".to_owned(), "close".to_owned())]);
    let ground_truth: String =
        sqlx::query("SELECT ground_truth FROM dispositions WHERE ticket = ?")
            .bind(&ticket)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(ground_truth, "close", "eve's escalate was not recorded");

    store.close().await;
    runtime.shutdown().await;
}

#[tokio::test]
async fn with_no_secret_configured_the_webhook_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = soc_runtime::store::Store::open(&dir.path().join("s.db"))
        .await
        .unwrap();
    let config = soc_runtime::webex::WebexConfig {
        bot_token: Some(soc_runtime::secret::Secret::new("t")),
        ..soc_runtime::webex::WebexConfig::default()
    };
    let hook = soc_runtime::webex::webhook::Hook::new(store.pool().clone(), config, None).unwrap();
    let app = soc_runtime::webex::webhook::routes(std::sync::Arc::new(hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webex/webhook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let body = notification("act-1");
    for key in ["", SECRET] {
        let (status, text) = post_hook(
            &reqwest::Client::new(),
            &url,
            &body,
            Some(&sign(key.as_bytes(), &body)),
        )
        .await;
        assert_eq!(status, 401);
        assert!(text.contains("no webhook secret"), "{text}");
    }
    server.abort();
    store.close().await;
}
