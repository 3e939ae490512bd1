//! The runtime as a whole, in-process: crash recovery, poison, health, escalation, Redis
//! outages and drains, against a real Redis where the test says so.

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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use soc_runtime::actors::role::PanicSchedule;
use soc_runtime::app::config::{Backend, Config};
use soc_runtime::app::runtime::{RunReport, Runtime};
use soc_runtime::bus::bridge::{self, BusBridge};
use soc_runtime::bus::{Bus, BusConfig, BusError, Commit, Fields, Outcome, Outgoing, Topic};
use soc_runtime::proto::{Alert, AlertReceived, Envelope, Event};
use soc_runtime::supervisor::{ExitReason, REACTIVE_ROLES, RuntimeOptions};

/// These runs take seconds; a run that never goes idle fails the test at this limit.
const RUN_LIMIT: Duration = Duration::from_secs(90);

struct Setup {
    config: Config,
    _dir: tempfile::TempDir,
    /// Deleted on drop, also when the test fails.
    _namespace: Option<common::Namespace>,
}

impl Setup {
    fn new(backend: Backend, redis_url: Option<String>, feed: Option<(&str, usize)>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            alerts: feed.map(|(prefix, n)| common::synthetic_feed(dir.path(), prefix, n)),
            ..Config::default()
        };
        config.http.addr = "off".into();
        config.bus.backend = backend;
        config.supervisor.idle_poll_ms = 50;
        let mut namespace = None;
        if backend == Backend::Redis {
            let url = redis_url.unwrap_or_else(common::redis_url);
            let ns = common::Namespace::new(&url, "runtime");
            config.bus.redis_url = url;
            config.bus.settings.namespace = ns.name().to_owned();
            namespace = Some(ns);
        }
        Setup {
            config,
            _dir: dir,
            _namespace: namespace,
        }
    }
}

async fn run_until_idle(config: Config, faults: Option<Arc<PanicSchedule>>) -> (RunReport, Bus) {
    run_idle_with(
        config,
        RuntimeOptions {
            faults,
            ..RuntimeOptions::default()
        },
    )
    .await
}

/// Runs a runtime with `options` until it is idle (`until_idle` is set here), within
/// [`RUN_LIMIT`].
async fn run_idle_with(config: Config, options: RuntimeOptions) -> (RunReport, Bus) {
    let runtime = Runtime::start(
        config,
        RuntimeOptions {
            until_idle: true,
            ..options
        },
    )
    .await
    .unwrap();
    let bus = runtime.bus().clone();
    let report = tokio::time::timeout(RUN_LIMIT, runtime.wait())
        .await
        .expect("the run went idle in time");
    (report, bus)
}

async fn crash_test(backend: Backend, role: &str) {
    let n = 2000;
    let mut setup = Setup::new(backend, None, Some(("crash", n)));
    // Few credits, so one crash never leaves an entry to be re-read past max_deliveries.
    setup.config.bus.settings.credits = 32;
    setup.config.bus.settings.read_batch = 32;
    // No claiming by idle time: only the restarted consumer re-reading its own pending entries
    // can recover what a crash left behind.
    setup.config.bus.settings.claim_idle_ms = 3_600_000;
    setup.config.supervisor.max_restarts = 10_000;
    setup.config.supervisor.backoff_initial_ms = 5;
    setup.config.supervisor.backoff_max_ms = 50;
    let faults = Arc::new(PanicSchedule::new(role, 50));
    let (report, bus) = run_until_idle(setup.config.clone(), Some(faults)).await;
    assert_eq!(report.exit, ExitReason::Idle);
    let summary = &report.summary;
    let restarts = summary.roles[role].restarts;
    assert!(restarts >= 20, "{role} restarted only {restarts} times");
    assert_eq!(summary.alerts_in, n as u64);
    common::assert_exactly_once(&bus, &common::ticket_ids("crash", n)).await;
    // The summary agrees with the audit.
    let counts = common::audit_counts(&bus).await;
    let escalated = counts.keys().filter(|(k, _)| k == "CaseEscalated").count() as u64;
    assert_eq!(summary.escalated, escalated);
    assert!(escalated > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_sentinel_panics_on_redis_and_every_alert_is_triaged_once() {
    common::logs();
    crash_test(Backend::Redis, "sentinel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_tier2_panics_on_redis_and_escalations_stay_exactly_once() {
    common::logs();
    crash_test(Backend::Redis, "tier2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_sentinel_panics_on_memory() {
    common::logs();
    crash_test(Backend::Memory, "sentinel").await;
}

async fn chain_test(backend: Backend) {
    let n = 600;
    let setup = Setup::new(backend, None, Some(("chain", n)));
    let (report, bus) = run_until_idle(setup.config.clone(), None).await;
    common::assert_exactly_once(&bus, &common::ticket_ids("chain", n)).await;
    let counts = common::audit_counts(&bus).await;
    let tickets_of = |kind: &str| -> BTreeSet<String> {
        counts
            .keys()
            .filter(|(k, _)| k == kind)
            .map(|(_, t)| t.clone())
            .collect()
    };
    let escalated = tickets_of("CaseEscalated");
    assert!(!escalated.is_empty());
    // Escalated cases run the whole chain; others end before the IR Lead.
    assert_eq!(tickets_of("IRPlan"), escalated);
    assert_eq!(tickets_of("ThreatIntelReport"), escalated);
    assert!(tickets_of("ActionProposed").is_subset(&escalated));
    let s = &report.summary;
    assert_eq!(s.roles["sentinel"].processed, n as u64);
    assert_eq!(s.roles["ir_lead"].processed, escalated.len() as u64);
    assert_eq!(s.escalated, escalated.len() as u64);
    assert_eq!(
        s.actions_proposed,
        counts
            .iter()
            .filter(|((k, _), _)| k == "ActionProposed")
            .map(|(_, n)| *n as u64)
            .sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_cases_run_the_whole_chain_on_memory() {
    common::logs();
    chain_test(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_cases_run_the_whole_chain_on_redis() {
    common::logs();
    chain_test(Backend::Redis).await;
}

async fn poison_test(backend: Backend) {
    let setup = Setup::new(backend, None, Some(("poison", 20)));
    let runtime = Runtime::start(setup.config.clone(), RuntimeOptions::default())
        .await
        .unwrap();
    let bus = runtime.bus().clone();
    let poison = Fields::from_pairs([
        ("v", &b"1"[..]),
        ("kind", &b"AlertReceived"[..]),
        ("id", &b"x"[..]),
        ("corr", &b"poison"[..]),
        ("data", &b"\x93\xff\x00garbage bytes"[..]),
    ]);
    bus.append_raw(Topic::Alerts, poison).await.unwrap();
    let dead = common::wait_for("the poison entry in soc.dead", RUN_LIMIT, || async {
        bus.read_all(Topic::Dead).await.unwrap().pop()
    })
    .await;
    let reason = dead.fields.get_str("dead_reason").unwrap();
    assert!(reason.contains("undecodable envelope"), "{reason}");
    assert_eq!(dead.fields.get_str("dead_group"), Some("sentinel"));
    // The role keeps running: a valid alert after the poison is triaged.
    let late = Envelope::new_root(
        "source:test",
        "after-poison",
        Event::AlertReceived(AlertReceived {
            alert: Alert {
                ticket_id: "after-poison".into(),
                source: "wazuh".into(),
                rule_id: "R".into(),
                rule_name: "Wazuh: First time user executed sudo.".into(),
                host: "h".into(),
                first_seen: "2026-01-01T00:00:00Z".into(),
                last_seen: "2026-01-01T00:00:00Z".into(),
                alert_count: 1,
                ..Alert::default()
            },
            received_via: "test".into(),
        }),
    );
    bus.submit(vec![Commit::dedupe(
        "alert:after-poison".into(),
        vec![Outgoing::event(&late).unwrap()],
    )])
    .await
    .unwrap();
    common::wait_for("the next alert to be triaged", RUN_LIMIT, || async {
        let counts = common::audit_counts(&bus).await;
        counts
            .contains_key(&("AlertTriaged".to_owned(), "after-poison".to_owned()))
            .then_some(())
    })
    .await;
    // The bus trusts no entry's say-so: a schema version from the future, one that is not a
    // number, or none at all is dead-lettered, never read as today's version; and an exact copy
    // of an alert's entry (another stream id, the same alert) is acked without a second case.
    let original = bus
        .read_all(Topic::Alerts)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.fields.get_str("corr") == Some("after-poison"))
        .unwrap();
    for v in [Some(&b"99"[..]), Some(&b"abc"[..]), None] {
        let mut fields = Fields::default();
        for (name, value) in original.fields.iter() {
            if name != "v" {
                fields.push(name.to_owned(), value.clone());
            }
        }
        if let Some(v) = v {
            fields.push("v", v.to_vec());
        }
        bus.append_raw(Topic::Alerts, fields).await.unwrap();
    }
    bus.append_raw(Topic::Alerts, (*original.fields).clone())
        .await
        .unwrap();
    let dead = common::wait_for("the versionless entries in soc.dead", RUN_LIMIT, || async {
        let dead = bus.read_all(Topic::Dead).await.unwrap();
        (dead.len() == 4).then_some(dead)
    })
    .await;
    let reasons: Vec<&str> = dead[1..]
        .iter()
        .map(|d| d.fields.get_str("dead_reason").unwrap())
        .collect();
    assert!(
        reasons[0].contains("unsupported schema version `99`"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("unsupported schema version `abc`"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("no `v`"), "{reasons:?}");
    let snapshot = common::wait_for("the copy to be handled", RUN_LIMIT, || async {
        let snapshot = runtime.observe().await.unwrap();
        (snapshot.roles["sentinel"].duplicates == 1).then_some(snapshot)
    })
    .await;
    let counts = common::audit_counts(&bus).await;
    assert_eq!(
        counts[&("AlertTriaged".to_owned(), "after-poison".to_owned())],
        1,
        "a copied entry is not a second case"
    );
    assert_eq!(snapshot.roles["sentinel"].restarts, 0);
    assert_eq!(snapshot.roles["sentinel"].feeder.dead_lettered, 4);
    assert!(snapshot.children.values().all(|up| *up));
    let state = bus
        .group_states(&[(Topic::Alerts, "sentinel")])
        .await
        .unwrap();
    assert!(state[0].is_idle(), "everything acked: {state:?}");
    let report = runtime.shutdown().await;
    assert_eq!(report.summary.dead_lettered, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_end_in_dead_and_the_role_keeps_running_on_redis() {
    common::logs();
    poison_test(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_end_in_dead_and_the_role_keeps_running_on_memory() {
    common::logs();
    poison_test(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_over_http_and_the_server_stops_with_the_runtime() {
    common::logs();
    let mut setup = Setup::new(Backend::Memory, None, None);
    setup.config.http.addr = "127.0.0.1:0".into();
    let runtime = Runtime::start(setup.config.clone(), RuntimeOptions::default())
        .await
        .unwrap();
    let url = format!("http://{}/healthz", runtime.http_addr().unwrap());
    let client = reqwest::Client::new();
    let body: serde_json::Value = common::wait_for("healthz ok", RUN_LIMIT, || async {
        let response = client.get(&url).send().await.ok()?;
        (response.status() == 200).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["bus"], "memory");
    for role in [
        "sentinel",
        "tier2",
        "ir_lead",
        "threat_intel",
        "alert-source",
        "http",
    ] {
        assert_eq!(body["children"][role], true, "{role}: {body}");
    }
    let missing = client
        .get(url.replace("/healthz", "/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let report = runtime.shutdown().await;
    assert_eq!(report.exit, ExitReason::Requested);
    assert!(client.get(&url).send().await.is_err(), "the server is gone");
}

/// A run without the cases' timelines (what a backtest's scratch store is) folds no case
/// event and every verdict and case; on Redis, whose store a restart reads back, it is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_timelines_has_every_verdict_and_case_and_only_on_the_memory_bus() {
    common::logs();
    let count = |store: &soc_runtime::store::Store, table: &str| {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let untimed = RuntimeOptions {
        until_idle: true,
        timelines: soc_runtime::store::Timelines::Skipped,
        ..RuntimeOptions::default()
    };
    let mut counts = Vec::new();
    for options in [RuntimeOptions::default(), untimed.clone()] {
        let setup = Setup::new(Backend::Memory, None, Some(("untimed", 40)));
        let (report, _) = run_idle_with(setup.config.clone(), options).await;
        assert_eq!(report.exit, ExitReason::Idle);
        let store = soc_runtime::store::Store::open(&setup.config.data_dir.join("soc-memory.db"))
            .await
            .unwrap();
        let mut of_run = Vec::new();
        for table in ["case_events", "cases", "verdicts", "indicators"] {
            of_run.push(count(&store, table).await);
        }
        store.close().await;
        counts.push(of_run);
    }
    let (kept, skipped) = (&counts[0], &counts[1]);
    assert!(kept[0] >= 80, "two events a case at least: {kept:?}");
    assert_eq!(skipped[0], 0, "no case event: {skipped:?}");
    assert_eq!(kept[1], 40);
    assert_eq!(
        kept[1..],
        skipped[1..],
        "cases, verdicts and indicators alike"
    );
    let redis = Setup::new(Backend::Redis, None, Some(("untimed", 5)));
    let refused = Runtime::start(redis.config.clone(), untimed).await;
    let err = refused.err().expect("refused on redis");
    assert!(
        matches!(err, soc_runtime::app::runtime::StartError::TimelinesOnRedis),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_intensity_escalates_and_the_runtime_exits_with_the_reason() {
    common::logs();
    let mut setup = Setup::new(Backend::Memory, None, Some(("intense", 50)));
    setup.config.supervisor.max_restarts = 3;
    setup.config.supervisor.backoff_initial_ms = 5;
    let faults = Arc::new(PanicSchedule::new("tier2", 1));
    let runtime = Runtime::start(
        setup.config.clone(),
        RuntimeOptions {
            until_idle: false,
            faults: Some(faults),
            ..RuntimeOptions::default()
        },
    )
    .await
    .unwrap();
    let report = tokio::time::timeout(RUN_LIMIT, runtime.wait())
        .await
        .expect("escalation stops the runtime");
    assert!(!report.is_success());
    match &report.exit {
        ExitReason::Escalated { child, error } => {
            assert_eq!(child, "tier2");
            assert!(error.contains("injected fault"), "{error}");
        }
        other => panic!("expected escalation, got {other:?}"),
    }
    assert_eq!(report.summary.roles["tier2"].restarts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_buffers_while_redis_is_down_refuses_when_full_and_loses_nothing() {
    common::logs();
    let mut server = common::RedisServer::start(false);
    let config = BusConfig {
        bridge_buffer: 8,
        ..BusConfig::default()
    };
    let (writer, queue) = bridge::queue(config.bridge_buffer);
    let bus = Bus::redis(&server.url(), config.clone(), writer)
        .await
        .unwrap();
    let (bridge_ref, _) = Actor::spawn(
        None,
        BusBridge,
        bridge::Args {
            url: server.url(),
            config,
            queue: queue.clone(),
        },
    )
    .await
    .unwrap();
    let commit = |i: usize| {
        let env = Envelope::new_root(
            "test",
            &format!("b-{i}"),
            Event::AlertReceived(AlertReceived::default()),
        );
        Commit::dedupe(format!("b-{i}"), vec![Outgoing::event(&env).unwrap()])
    };
    assert_eq!(
        bus.submit(vec![commit(0)]).await.unwrap(),
        [Outcome::Applied]
    );

    server.kill();
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let mut accepted = 1;
    let mut refused = 0;
    for i in 1..100 {
        let tx = tx.clone();
        match bus.submit_with(vec![commit(i)], Box::new(move |r| drop(tx.send(r)))) {
            Ok(()) => accepted += 1,
            Err(BusError::Backpressure(cap)) => {
                assert_eq!(cap, 8);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused > 0, "a full buffer refuses new work");
    assert!(accepted <= 1 + 8 + 1, "buffer bounded: {accepted} accepted");
    let down = queue.snapshot();
    assert!(!down.connected && down.reconnects > 0, "{down:?}");

    server.restart();
    for _ in 1..accepted {
        let outcome = tokio::time::timeout(RUN_LIMIT, done.recv())
            .await
            .expect("buffered commits are written after reconnecting")
            .unwrap()
            .unwrap();
        assert_eq!(outcome, [Outcome::Applied]);
    }
    // The query connection reconnects on its own; the first query after the outage may fail.
    let len = common::wait_for("a query after the outage", RUN_LIMIT, || async {
        bus.len(Topic::Alerts).await.ok()
    })
    .await;
    assert_eq!(
        len,
        accepted as u64 - 1,
        "every accepted commit was written"
    );
    assert!(queue.snapshot().connected);
    bridge_ref.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_while_redis_is_down_ends_within_its_timeouts() {
    common::logs();
    let mut server = common::RedisServer::start(false);
    let mut setup = Setup::new(Backend::Redis, Some(server.url()), Some(("down", 2000)));
    setup.config.supervisor.drain_timeout_s = 2;
    let runtime = Runtime::start(setup.config.clone(), RuntimeOptions::default())
        .await
        .unwrap();
    let bus = runtime.bus().clone();
    common::wait_for("some triage", RUN_LIMIT, || async {
        (bus.len(Topic::Triage).await.ok()? >= 100).then_some(())
    })
    .await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Each drain step may take its timeout; the whole drain must still end.
    let report = tokio::time::timeout(Duration::from_secs(60), runtime.shutdown())
        .await
        .expect("the drain ends although redis is gone");
    assert_eq!(report.exit, ExitReason::Requested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_drain_leaves_nothing_in_flight_and_a_rerun_finishes_the_rest() {
    common::logs();
    let n = 3000;
    let setup = Setup::new(Backend::Redis, None, Some(("drain", n)));
    let runtime = Runtime::start(setup.config.clone(), RuntimeOptions::default())
        .await
        .unwrap();
    let bus = runtime.bus().clone();
    common::wait_for("some triage", RUN_LIMIT, || async {
        (bus.len(Topic::Triage).await.unwrap() >= 200).then_some(())
    })
    .await;
    let report = runtime.shutdown().await;
    assert_eq!(report.exit, ExitReason::Requested);
    let groups: Vec<(Topic, &str)> = REACTIVE_ROLES.iter().map(|r| (r.input, r.name)).collect();
    for state in bus.group_states(&groups).await.unwrap() {
        assert_eq!(
            state.pending, 0,
            "drained roles leave nothing in flight: {state:?}"
        );
    }
    let (second, bus) = run_until_idle(setup.config.clone(), None).await;
    assert_eq!(second.exit, ExitReason::Idle);
    common::assert_exactly_once(&bus, &common::ticket_ids("drain", n)).await;
    assert_eq!(
        report.summary.alerts_in + second.summary.alerts_in,
        n as u64,
        "each alert published once across both runs"
    );
}

async fn retention_test(backend: Backend) {
    let n = 5000;
    let mut setup = Setup::new(backend, None, Some(("ret", n)));
    setup.config.bus.settings.retention.insert(
        "soc.alerts".into(),
        soc_runtime::bus::Retention::MaxLen(1000),
    );
    let (report, bus) = run_until_idle(setup.config.clone(), None).await;
    assert_eq!(report.exit, ExitReason::Idle);
    assert_eq!(report.summary.alerts_in, n as u64);
    // Retention far below the backlog: every alert still triaged, exactly once.
    common::assert_exactly_once(&bus, &common::ticket_ids("ret", n)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_below_the_backlog_trims_nothing_unread_on_redis() {
    retention_test(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_below_the_backlog_trims_nothing_unread_on_memory() {
    retention_test(Backend::Memory).await;
}

/// `/healthz` and `/metrics` while Redis freezes, then fills up: degraded within seconds, with
/// the state and its cause, and back once Redis is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_or_full_redis_shows_on_healthz_and_metrics_within_seconds() {
    common::logs();
    let server = common::RedisServer::start(false);
    let mut setup = Setup::new(Backend::Redis, Some(server.url()), Some(("frozen", 20)));
    setup.config.http.addr = "127.0.0.1:0".into();
    let runtime = Runtime::start(setup.config.clone(), RuntimeOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    // Each request is bounded: a `/healthz` that hangs fails its attempt (the wait goes on),
    // a `/metrics` that hangs fails the test.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health = |want: &'static str| {
        let http = http.clone();
        let url = format!("{base}/healthz");
        async move {
            common::wait_for(want, Duration::from_secs(15), || async {
                let body: serde_json::Value =
                    http.get(&url).send().await.ok()?.json().await.ok()?;
                (body["bus_state"] == want).then_some(body)
            })
            .await
        }
    };
    let metrics = || async {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let ok = health("connected").await;
    assert_eq!(ok["status"], "ok");
    assert!(metrics().await.contains("soc_bus_bridge_up 1"));

    let freeze = server.freeze_for(Duration::from_secs(60));
    let frozen_at = std::time::Instant::now();
    let frozen = health("unreachable").await;
    let noticed = frozen_at.elapsed();
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    assert_eq!(frozen["status"], "degraded");
    // The cause, whichever noticed first: the probe, or a write that timed out.
    let cause = frozen["bus_error"].as_str().unwrap();
    assert!(
        cause.contains("did not answer") || cause.contains("timed out"),
        "{frozen}"
    );
    let text = metrics().await;
    assert!(text.contains("soc_bus_bridge_up 0"), "{text}");
    assert!(text.contains("soc_bus_bridge_state{state=\"unreachable\"} 1"));
    drop(freeze);
    assert_eq!(health("connected").await["status"], "ok");

    // Full (noeviction): Redis answers but refuses writes.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let full = health("refusing").await;
    assert_eq!(full["status"], "degraded");
    assert!(
        full["bus_error"].as_str().unwrap().contains("OOM"),
        "{full}"
    );
    assert!(
        metrics()
            .await
            .contains("soc_bus_bridge_state{state=\"refusing\"} 1")
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(health("connected").await["status"], "ok");
    runtime.shutdown().await;
}

/// The README's `tail -F ... | --alerts FIFO` pattern, stopped while Redis is frozen: every
/// line the runtime read is published or spooled (and published first on the next start), the
/// drain ends within its budget, and what the writer still had in the pipe is read next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_feed_stopped_while_redis_is_frozen_loses_no_line_it_read() {
    use std::io::Write;
    common::logs();
    let server = common::RedisServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("alerts.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let lines: Vec<String> =
        std::fs::read_to_string(common::synthetic_feed(dir.path(), "fifo", 400))
            .unwrap()
            .lines()
            .map(|l| format!("{l}\n"))
            .collect();
    // The writer holds the FIFO open across both runs, as `tail -F` would.
    let (to_writer, orders) = std::sync::mpsc::channel::<Option<std::ops::Range<usize>>>();
    let writer_path = fifo.clone();
    let writer_lines = lines.clone();
    let writer = std::thread::spawn(move || {
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        while let Ok(Some(range)) = orders.recv() {
            for line in &writer_lines[range] {
                pipe.write_all(line.as_bytes()).unwrap();
            }
            pipe.flush().unwrap();
        }
    });
    let mut setup = Setup::new(Backend::Redis, Some(server.url()), None);
    setup.config.alerts = Some(fifo.clone());
    setup.config.supervisor.drain_timeout_s = 6;
    let runtime = Runtime::start(setup.config.clone(), RuntimeOptions::default())
        .await
        .unwrap();
    let bus = runtime.bus().clone();
    to_writer.send(Some(0..300)).unwrap();
    common::wait_for("the first 300 published", RUN_LIMIT, || async {
        (bus.len(Topic::Alerts).await.ok()? >= 300).then_some(())
    })
    .await;
    let freeze = server.freeze_for(Duration::from_secs(60));
    to_writer.send(Some(300..400)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = std::time::Instant::now();
    let report = runtime.shutdown().await;
    let took = stopping.elapsed();
    assert_eq!(report.exit, ExitReason::Requested);
    assert!(took < Duration::from_secs(12), "the drain took {took:?}");
    let spool = std::fs::read_dir(setup.config.data_dir.join("spool"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let spooled = std::fs::read_to_string(&spool).unwrap().lines().count();
    assert!(
        spooled >= 1,
        "what was read but not taken by the frozen bus is spooled"
    );
    drop(freeze);

    // The next start publishes the spool first, then reads on where the pipe is.
    let mut config = setup.config.clone();
    config.http.addr = "off".into();
    let runtime = Runtime::start(
        config,
        RuntimeOptions {
            until_idle: true,
            ..RuntimeOptions::default()
        },
    )
    .await
    .unwrap();
    let bus = runtime.bus().clone();
    common::wait_for("the spool published", RUN_LIMIT, || async {
        (!spool.exists()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    to_writer.send(None).unwrap();
    writer.join().unwrap();
    let report = tokio::time::timeout(RUN_LIMIT, runtime.wait())
        .await
        .unwrap();
    assert_eq!(report.exit, ExitReason::Idle);
    common::assert_exactly_once(&bus, &common::ticket_ids("fifo", 400)).await;
}

/// A runtime handed an open store (a backtest's scratch store) folds into it and leaves it
/// open for its owner; a store at another file than the runtime's is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_store_is_folded_into_and_left_open_and_must_be_the_runtimes_file() {
    let n = 20;
    let setup = Setup::new(Backend::Memory, None, Some(("handed", n)));
    let data = &setup.config.data_dir;
    std::fs::create_dir_all(data).unwrap();
    let options = |store: &soc_runtime::store::Store| RuntimeOptions {
        until_idle: true,
        store: Some(store.clone()),
        ..RuntimeOptions::default()
    };

    let other = soc_runtime::store::Store::open(&data.join("other.db"))
        .await
        .unwrap();
    match Runtime::start(setup.config.clone(), options(&other)).await {
        Err(soc_runtime::app::runtime::StartError::SharedStore { given, wanted }) => {
            assert!(given.ends_with("other.db"), "{given}");
            assert!(
                wanted.ends_with(soc_runtime::store::MEMORY_FILE),
                "{wanted}"
            );
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a runtime started on another file's store"),
    }
    other.close().await;

    let store = soc_runtime::store::Store::open(&soc_runtime::store::file_for(data, "memory"))
        .await
        .unwrap();
    let (report, _) = run_idle_with(setup.config.clone(), options(&store)).await;
    assert_eq!(report.exit, ExitReason::Idle);
    assert_eq!(report.summary.store.projected.errors, 0);
    // Still open after the runtime stopped (a closed pool refuses every query), and it holds
    // what the run folded: a triage verdict per alert.
    let triaged: BTreeSet<String> = store
        .verdicts()
        .await
        .expect("the handed store is still open")
        .into_iter()
        .filter(|v| v.kind == "AlertTriaged")
        .map(|v| v.ticket)
        .collect();
    assert_eq!(triaged.len(), n);
    store.close().await;
}
