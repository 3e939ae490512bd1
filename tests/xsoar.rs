//! XSOAR as an alert source, against a local server that replays XSOAR incident-search
//! responses (`tests/fixtures/xsoar/incidents.json`, in the shape the XSOAR API documents):
//! incidents become alerts once each, a malformed one is skipped, XSOAR 8 authentication
//! headers are sent, and a restart resumes from the stored cursor on a real Redis.

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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{Value, json};
use soc_runtime::app::config::{Backend, Config};
use soc_runtime::bus::Topic;

/// What the replay server was asked: Authorization, x-xdr-auth-id, the filter.
type Asked = (String, String, Value);

struct Replay {
    incidents: Vec<Value>,
    /// How many of the recorded incidents exist yet.
    visible: AtomicUsize,
    asked: Mutex<Vec<Asked>>,
    /// War-room entries written: (Authorization, body).
    entries: Mutex<Vec<(String, Value)>>,
}

async fn entry(
    State(r): State<Arc<Replay>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.entries.lock().push((auth, body.clone()));
    Json(json!([{"id": format!("{}@{}", r.entries.lock().len(), body["id"]), "type": 1}]))
}

async fn search(
    State(r): State<Arc<Replay>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let filter = body["filter"].clone();
    r.asked.lock().push((
        header("authorization"),
        header("x-xdr-auth-id"),
        filter.clone(),
    ));
    // Closures are asked by close time (`fromClosedDate`), new incidents by creation time.
    let (field, from) = match filter["fromClosedDate"].as_str() {
        Some(from) => ("closed", from),
        None => ("created", filter["fromDate"].as_str().unwrap()),
    };
    let from = chrono::DateTime::parse_from_rfc3339(from).unwrap();
    let mut matching: Vec<&Value> = r.incidents[..r.visible.load(Ordering::SeqCst)]
        .iter()
        .filter(|i| field == "created" || i["status"] == 2)
        .filter(|i| {
            // Incidents whose time does not parse are returned as they are.
            i[field]
                .as_str()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .is_none_or(|c| c >= from)
        })
        .collect();
    if field == "closed" {
        matching.sort_by_key(|i| i["closed"].as_str().unwrap_or_default().to_owned());
    }
    let size = filter["size"].as_u64().unwrap() as usize;
    let page = filter["page"].as_u64().unwrap() as usize;
    let data: Vec<&Value> = matching
        .iter()
        .skip(page * size)
        .take(size)
        .copied()
        .collect();
    Json(json!({
        "total": matching.len(),
        "data": if data.is_empty() { Value::Null } else { json!(data) }
    }))
}

async fn alerts(bus: &soc_runtime::bus::Bus) -> Vec<soc_runtime::proto::Alert> {
    bus.read_all(Topic::Audit)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.fields.decode_envelope().ok())
        .filter_map(|e| match e.event {
            soc_runtime::proto::Event::AlertReceived(a) => Some(a.alert),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xsoar_incidents_become_alerts_once_and_a_restart_resumes_from_the_cursor() {
    common::logs();
    let recorded: Value =
        serde_json::from_str(include_str!("fixtures/xsoar/incidents.json")).unwrap();
    let replay = Arc::new(Replay {
        incidents: recorded["data"].as_array().unwrap().clone(),
        visible: AtomicUsize::new(4),
        asked: Mutex::new(Vec::new()),
        entries: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route(
            "/xsoar/public/v1/incidents/search",
            axum::routing::post(search),
        )
        .route("/xsoar/public/v1/entry", axum::routing::post(entry))
        .with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/xsoar/public/v1", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let redis = common::redis_url();
    let namespace = common::Namespace::new(&redis, "xsoar");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.bus.backend = Backend::Redis;
    config.bus.redis_url = redis;
    config.bus.settings.namespace = namespace.name().to_owned();
    config.http.addr = "off".into();
    config.calendar.enabled = false;
    config.xsoar = soc_runtime::ingest::xsoar::XsoarConfig {
        url,
        api_key: Some(soc_runtime::secret::Secret::new("xsoar-key-for-tests")),
        api_key_id: Some("17".into()),
        poll_s: 1,
        page_size: 2,
        start: "2026-11-01T00:00:00Z".into(),
        site: Some("hq".into()),
        write_notes: true,
        ..Default::default()
    };
    config.validate().unwrap();

    let start = |config: Config| async move {
        soc_runtime::app::runtime::Runtime::start(
            config,
            soc_runtime::supervisor::RuntimeOptions::default(),
        )
        .await
        .unwrap()
    };
    let runtime = start(config.clone()).await;
    let bus = runtime.bus().clone();
    let first = common::wait_for("three alerts", Duration::from_secs(30), || async {
        let a = alerts(&bus).await;
        (a.len() >= 3).then_some(a)
    })
    .await;
    let mut tickets: Vec<&str> = first.iter().map(|a| a.ticket_id.as_str()).collect();
    tickets.sort_unstable();
    assert_eq!(
        tickets,
        ["xsoar-1201", "xsoar-1202", "xsoar-1204"],
        "1203 is malformed"
    );
    let mail = first.iter().find(|a| a.ticket_id == "xsoar-1201").unwrap();
    assert_eq!(
        (
            mail.host.as_str(),
            mail.user.as_deref(),
            mail.site.as_deref()
        ),
        ("mail-gw", Some("j.doe"), Some("hq"))
    );
    assert_eq!(mail.src_ips, ["198.51.100.23"]);
    assert_eq!(mail.rule_id, "Authentication");
    assert_eq!(mail.source, "splunk_py");
    let ws = first.iter().find(|a| a.ticket_id == "xsoar-1202").unwrap();
    assert_eq!(
        (ws.host.as_str(), ws.user.as_deref()),
        ("ws-0142", Some("CORP\\m.smith"))
    );
    // XSOAR 8 authentication on every request; paged two at a time, oldest first.
    {
        let asked = replay.asked.lock();
        assert!(
            asked
                .iter()
                .all(|(auth, id, _)| auth == "xsoar-key-for-tests" && id == "17")
        );
        assert_eq!(asked[0].2["fromDate"], "2026-11-01T00:00:00.000Z");
        assert_eq!(
            asked[0].2["sort"],
            json!([{"field": "created", "asc": true}])
        );
        assert_eq!(asked[0].2["query"], "-status:closed");
        assert_eq!(asked[0].2["page"], 0);
        // Each next page is asked from the newest incident seen (not by offset), by page
        // number only past a page of one instant.
        assert_eq!(asked[1].2["fromDate"], "2026-11-20T08:03:55.000Z");
        assert_eq!(asked[1].2["page"], 0);
    }
    // Later polls start from the newest incident published (1204, 09:12+01:00) and add nothing.
    common::wait_for(
        "a poll from the cursor",
        Duration::from_secs(10),
        || async {
            replay
                .asked
                .lock()
                .iter()
                .any(|a| a.2["fromDate"] == "2026-11-20T08:12:00.000Z")
                .then_some(())
        },
    )
    .await;
    assert_eq!(alerts(&bus).await.len(), 3);
    runtime.shutdown().await;

    // Two incidents arrive while the poller is down; the restart resumes from its cursor.
    replay.visible.store(6, Ordering::SeqCst);
    let asked_before = replay.asked.lock().len();
    let runtime = start(config).await;
    let bus = runtime.bus().clone();
    let all = common::wait_for("five alerts", Duration::from_secs(30), || async {
        let a = alerts(&bus).await;
        (a.len() >= 5).then_some(a)
    })
    .await;
    let resumed_from = replay.asked.lock()[asked_before].2["fromDate"].clone();
    assert_eq!(resumed_from, "2026-11-20T08:12:00.000Z");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut tickets: Vec<String> = alerts(&bus)
        .await
        .into_iter()
        .map(|a| a.ticket_id)
        .collect();
    tickets.sort_unstable();
    assert_eq!(
        tickets,
        [
            "xsoar-1201",
            "xsoar-1202",
            "xsoar-1204",
            "xsoar-1205",
            "xsoar-1206"
        ],
        "every incident once: {all:?}"
    );
    // Each incident's triage went to its war room once, across the restart; each plan too.
    let groups: Vec<_> = soc_runtime::supervisor::REACTIVE_ROLES
        .iter()
        .map(|r| (r.input, r.name))
        .collect();
    common::wait_for("the roles idle", Duration::from_secs(30), || async {
        let states = bus.group_states(&groups).await.unwrap();
        states.iter().all(|s| s.is_idle()).then_some(())
    })
    .await;
    let plans = bus
        .read_all(Topic::Audit)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.fields.decode_envelope().ok())
        .filter(|e| matches!(e.event, soc_runtime::proto::Event::IrPlan(_)))
        .count();
    let entries = common::wait_for("the war-room notes", Duration::from_secs(30), || async {
        let entries = replay.entries.lock().clone();
        (entries.len() >= 5 + plans).then_some(entries)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(replay.entries.lock().len(), 5 + plans, "no note twice");
    let mut triaged: Vec<&str> = entries
        .iter()
        .filter(|(_, b)| {
            b["data"]
                .as_str()
                .unwrap()
                .starts_with("**soc-runtime triage**")
        })
        .map(|(_, b)| b["id"].as_str().unwrap())
        .collect();
    triaged.sort_unstable();
    assert_eq!(triaged, ["1201", "1202", "1204", "1205", "1206"]);
    for (auth, body) in &entries {
        assert_eq!(auth, "xsoar-key-for-tests");
        assert_eq!(body["investigationId"], body["id"]);
        assert_eq!(body["markdown"], true);
    }
    runtime.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xsoar_closures_teach_every_process_once_by_their_close_reason() {
    common::logs();
    let closed = |id: &str, reason: Option<&str>, at: Option<&str>| {
        json!({
            "id": id, "name": format!("Incident {id}"), "type": "Malware", "status": 2,
            "severity": 4, "owner": "ana", "created": "2026-10-01T10:00:00Z",
            "occurred": "2026-10-01T09:58:00Z", "closed": at, "closeReason": reason,
            "closeNotes": "checked the host", "CustomFields": {"hostname": "ws-7"}
        })
    };
    let replay = Arc::new(Replay {
        incidents: vec![
            closed("2001", Some("True Positive"), Some("2026-11-02T10:00:00Z")),
            closed("2002", Some("False Positive"), Some("2026-11-02T11:00:00Z")),
            closed("2003", Some("Other"), Some("2026-11-02T12:00:00Z")),
            closed("2004", Some("False Positive"), None),
            closed(
                "2005",
                Some("benign true positive"),
                Some("2026-11-02T13:00:00Z"),
            ),
        ],
        visible: AtomicUsize::new(5),
        asked: Mutex::new(Vec::new()),
        entries: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/incidents/search", axum::routing::post(search))
        .with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let redis = common::redis_url();
    let namespace = common::Namespace::new(&redis, "xsoar-closures");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.bus.backend = Backend::Redis;
    config.bus.redis_url = redis;
    config.bus.settings.namespace = namespace.name().to_owned();
    config.http.addr = "off".into();
    config.calendar.enabled = false;
    config.xsoar = soc_runtime::ingest::xsoar::XsoarConfig {
        url,
        api_key: Some(soc_runtime::secret::Secret::new("xsoar-key-for-tests")),
        poll_s: 1,
        page_size: 2,
        start: "2026-11-01T00:00:00Z".into(),
        site: Some("hq".into()),
        learn_closures: true,
        ..Default::default()
    };
    config.validate().unwrap();
    let dispositions = |bus: soc_runtime::bus::Bus| async move {
        bus.read_all(Topic::Audit)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.fields.decode_envelope().ok())
            .filter_map(|e| match e.event {
                soc_runtime::proto::Event::DispositionRecorded(d) => Some(d),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    for round in 0..2 {
        let knowledge = Arc::new(soc_runtime::knowledge::Knowledge::default());
        let runtime = soc_runtime::app::runtime::Runtime::start(
            config.clone(),
            soc_runtime::supervisor::RuntimeOptions {
                knowledge: Some(knowledge.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let bus = runtime.bus().clone();
        // The reasoner knows the three closures with a reason it maps, whichever round.
        common::wait_for("the closures learned", Duration::from_secs(30), || {
            let k = knowledge.clone();
            async move { (k.dispositions() == 3).then_some(()) }
        })
        .await;
        // A few more polls: nothing is published twice, across the restart too.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let recorded = dispositions(bus.clone()).await;
        let mut seen: Vec<(String, soc_runtime::proto::Disposition)> = recorded
            .iter()
            .map(|d| (d.case.ticket.clone(), d.disposition))
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        use soc_runtime::proto::Disposition::{Close, Escalate};
        assert_eq!(
            seen,
            [
                ("xsoar-2001".to_owned(), Escalate),
                ("xsoar-2002".to_owned(), Close),
                ("xsoar-2005".to_owned(), Close)
            ],
            "round {round}: 2003's reason teaches nothing, 2004 has no close time"
        );
        let first = recorded
            .iter()
            .find(|d| d.case.ticket == "xsoar-2001")
            .unwrap();
        assert_eq!(first.origin, "xsoar");
        assert_eq!(first.by, "ana");
        assert_eq!(first.known_at_ms, 1_793_613_600_000);
        assert_eq!(first.case.site.as_deref(), Some("hq"));
        let p = knowledge.priors("Malware", "ws-7", "xsoar", i64::MAX);
        assert_eq!((p.rule.escalated, p.rule.closed), (1, 2));
        runtime.shutdown().await;
    }
    // Closures were asked by close time, earliest first.
    assert!(replay.asked.lock().iter().any(|a| {
        a.2["fromClosedDate"] == "2026-11-01T00:00:00.000Z"
            && a.2["sort"] == json!([{"field": "closed", "asc": true}])
    }));
    server.abort();
}
