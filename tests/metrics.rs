//! `GET /metrics` of a runtime on a real Redis, parsed by a Prometheus text-format parser
//! (prometheus-parse) and checked for the format's rules the parser is lenient about.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "tests: a failure should fail loudly"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use soc_runtime::app::config::{Backend, Config};

fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_add_up_to_the_run() {
    common::logs();
    let n = 120;
    let dir = tempfile::tempdir().unwrap();
    let url = common::redis_url();
    let namespace = common::Namespace::new(&url, "metrics");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        alerts: Some(common::synthetic_feed(dir.path(), "mx", n)),
        ..Config::default()
    };
    config.bus.backend = Backend::Redis;
    config.bus.redis_url = url;
    config.bus.settings.namespace = namespace.name().to_owned();
    config.http.addr = "127.0.0.1:0".into();
    config.calendar.enabled = false;
    let (runtime, base, store) = common::start_serving(config).await;
    let http = reqwest::Client::new();

    // Scrape until the run is done: every alert triaged, nothing pending or unread.
    let (text, scrape) = common::wait_for("the run done", Duration::from_secs(60), || async {
        let response = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let triaged = value(&scrape, "soc_role_processed_total", &[("role", "sentinel")]);
        let busy = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "soc_stream_pending" || s.metric == "soc_stream_lag")
            .any(|s| !matches!(s.value, Value::Gauge(v) if v == 0.0));
        (triaged == Some(n as f64) && !busy).then_some((text, scrape))
    })
    .await;

    // The format's rules: one TYPE per family, before its samples; every sample typed.
    let mut types: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} typed twice"
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            let number = line.rsplit(' ').next().unwrap();
            assert!(number.parse::<f64>().is_ok(), "not a number: {line}");
        }
    }

    // What they say adds up to the run.
    let groups = ["sentinel", "tier2", "ir_lead", "threat_intel"];
    for group in groups {
        assert_eq!(
            value(&scrape, "soc_stream_pending", &[("group", group)]),
            Some(0.0),
            "{group}"
        );
        assert_eq!(
            value(&scrape, "soc_stream_lag", &[("group", group)]),
            Some(0.0)
        );
        assert_eq!(
            value(&scrape, "soc_role_restarts_total", &[("role", group)]),
            Some(0.0)
        );
    }
    assert_eq!(
        value(&scrape, "soc_source_alerts_total", &[]),
        Some(n as f64)
    );
    assert_eq!(value(&scrape, "soc_dead_letters", &[]), Some(0.0));
    assert_eq!(value(&scrape, "soc_scrape_errors", &[]), Some(0.0));
    let escalated = value(
        &scrape,
        "soc_role_published_total",
        &[("role", "tier2"), ("kind", "CaseEscalated")],
    )
    .unwrap();
    assert!(escalated > 0.0);
    assert_eq!(
        value(&scrape, "soc_role_processed_total", &[("role", "ir_lead")]),
        Some(escalated),
        "the IR Lead took every escalated case"
    );
    // The latency histogram: cumulative buckets ending at the count of decisions.
    let latency = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "soc_role_latency_seconds" && s.labels.get("role") == Some("sentinel")
        })
        .expect("sentinel's latency");
    let Value::Histogram(buckets) = &latency.value else {
        panic!("not a histogram: {:?}", latency.value);
    };
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    assert_eq!(buckets.last().unwrap().count, n as f64);
    // Approvals pending: every proposal the store holds, none decided yet.
    let proposals = soc_runtime::approvals::list(store.pool(), true, 100_000)
        .await
        .unwrap()
        .len();
    let pending = common::wait_for("proposals folded", Duration::from_secs(30), || async {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        value(&scrape, "soc_approvals_pending", &[]).filter(|p| *p >= proposals as f64 && *p > 0.0)
    })
    .await;
    assert_eq!(
        value(&scrape, "soc_approvals_decided_total", &[]),
        Some(0.0)
    );
    let by_role: BTreeMap<_, _> = groups
        .iter()
        .map(|g| {
            (
                g,
                value(&scrape, "soc_role_processed_total", &[("role", g)]),
            )
        })
        .collect();
    eprintln!("metrics: processed {by_role:?}, approvals pending {pending}");
    runtime.shutdown().await;
    store.close().await;
}
