//! `POST /ingest/<source>` of a running runtime, through a real HTTP client: tokens, NDJSON and
//! Splunk HEC envelopes, grouping into cases, refusals by reason, limits (413, 429), and what
//! `/metrics` says of it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "tests: a failure should fail loudly"
)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use soc_runtime::app::config::Config;
use soc_runtime::bus::Topic;
use soc_runtime::ingest::format::FeedFormat;
use soc_runtime::ingest::http::HttpSource;
use soc_runtime::secret::Secret;

const TOKEN: &str = "suricata-hq-token-0123456789";

/// Suricata's documented alert (`tests/fixtures/vendors`), at `second` past its minute, on
/// internal host `host`.
fn eve(host: &str, second: u32) -> String {
    let record = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vendors/suricata-eve-alert.json"),
    )
    .unwrap();
    record
        .trim()
        .replace("192.168.2.7", host)
        .replace("21:27:09.534255", &format!("21:27:{second:02}.000000"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_alerts_are_authenticated_grouped_counted_and_limited() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.calendar.enabled = false;
    config.ingest.max_body_bytes = 64 * 1024;
    config.ingest.sources.insert(
        "suricata-hq".into(),
        HttpSource {
            format: FeedFormat::Eve,
            site: Some("hq".into()),
            token: Some(Secret::new(TOKEN)),
            records_per_s: 50,
            ..HttpSource::default()
        },
    );
    let (runtime, base, store) = common::start_serving(config).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/ingest/suricata-hq");
    let post = |auth: Option<String>, body: String| {
        let mut request = http.post(&url).body(body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let bearer = || Some(format!("Bearer {TOKEN}"));

    // No token, a wrong one, an unknown source: the same 401.
    let one = eve("10.1.1.1", 1);
    for auth in [None, Some("Bearer not-the-token-at-all".to_owned())] {
        let r = post(auth, one.clone()).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let r = http
        .post(format!("{base}/ingest/nobody"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // NDJSON: two alerts of one case, one of another host, a DNS event, a broken line.
    let dns =
        r#"{"timestamp":"2009-11-24T21:27:10.000000","event_type":"dns","src_ip":"10.1.1.1"}"#;
    let body = [
        eve("10.1.1.1", 1),
        eve("10.1.1.1", 2),
        eve("10.2.2.2", 3),
        dns.to_owned(),
        "{not json".to_owned(),
    ]
    .join("\n");
    let r = post(bearer(), body).await.unwrap();
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    assert_eq!(
        (
            &a["records"],
            &a["cases_opened"],
            &a["skipped"],
            &a["rejected"]
        ),
        (&json!(5), &json!(2), &json!(1), &json!(1)),
        "{a}"
    );
    assert_eq!(a["errors"][0]["record"], 5, "{a}");

    // Splunk HEC envelopes, back to back, with HEC's own scheme: a repeat of an open case.
    let hec = format!(
        r#"{{"event":{},"sourcetype":"suricata"}}{{"event":{},"sourcetype":"suricata"}}"#,
        eve("10.1.1.1", 4),
        eve("10.3.3.3", 5)
    );
    let r = post(Some(format!("Splunk {TOKEN}")), hec).await.unwrap();
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["cases_opened"], 1, "{a}");

    // Nothing usable: 400 with the reasons.
    let r = post(bearer(), r#"{"timestamp":"x"}"#.to_owned())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let a: Value = r.json().await.unwrap();
    assert!(
        a["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timestamp"),
        "{a}"
    );

    // The cases are on the bus, the repeats folded into them as updates within a second or two.
    let bus = runtime.bus();
    common::wait_for("3 cases and an update", Duration::from_secs(10), || async {
        let entries = bus.read_all(Topic::Alerts).await.unwrap();
        let kinds: Vec<String> = entries
            .iter()
            .filter_map(|e| e.fields.get_str("kind").map(str::to_owned))
            .collect();
        let cases = kinds.iter().filter(|k| *k == "AlertReceived").count();
        let updates = kinds.iter().filter(|k| *k == "CaseUpdated").count();
        (cases == 3 && updates >= 1).then_some(())
    })
    .await;

    // Too big: more records than the rate allows in one request, or more bytes than the limit.
    let many = vec![eve("10.9.9.9", 6); 51].join("\n");
    assert_eq!(post(bearer(), many).await.unwrap().status(), 413);
    let huge = format!("{}\n", "x".repeat(70 * 1024));
    assert_eq!(post(bearer(), huge).await.unwrap().status(), 413);
    // Too fast: the bucket (50 a second) is spent by two requests of 30.
    let thirty = vec![eve("10.9.9.9", 7); 30].join("\n");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let r = post(bearer(), thirty.clone()).await.unwrap();
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some());

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"soc_ingest_records_total{source="suricata-hq",outcome="skipped"} 1"#,
        r#"soc_ingest_refused_requests_total{source="suricata-hq",status="401"} 2"#,
        r#"soc_ingest_refused_requests_total{source="suricata-hq",status="413"} 2"#,
        r#"soc_ingest_refused_requests_total{source="suricata-hq",status="400"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(metrics.contains(r#"soc_ingest_rejected_total{source="suricata-hq",reason="record is not JSON (one record, or one a line)"} 1"#), "{metrics}");
    runtime.shutdown().await;
    store.close().await;
}
