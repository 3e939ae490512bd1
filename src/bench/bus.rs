//! `soc-runtime bench bus`: bus throughput, measured against a baseline in the same run.
//!
//! The measured path is the one the SOC runs: a producer publishes events with dedupe keys
//! (ingestion, with audit copies), consumers read them through one consumer group and commit
//! each input (ack + one output + its audit copy) the way a role does: one submission per
//! read, every commit atomic and fenced. On Redis the commits go through the real bus bridge
//! actor.
//!
//! Baselines, measured in the same process moments before, with the same payload:
//! - memory: a bare bounded tokio channel from one task to another (the floor for handing a
//!   message between tasks, with none of the bus semantics);
//! - redis: raw pipelined `XADD` (256 per pipeline) on the same server, as
//!   `redis-benchmark -t xadd -P 256` would measure with our payload.
//!
//! Each measurement runs `rounds` times; the median is reported with the spread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ractor::Actor;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::bus::bridge::{self, BusBridge};
use crate::bus::{Bus, BusConfig, BusError, Commit, Fields, Outgoing, Retention, Topic};
use crate::proto::{AlertTriaged, CaseContext, Envelope, Event, TriageVerdict};

/// Result of one bus benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BusBench {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Events per round, each through publish -> consume -> commit.
    pub events: u64,
    /// Rounds measured.
    pub rounds: usize,
    /// Median events per second.
    pub events_per_s: f64,
    /// Slowest round, events per second.
    pub min_per_s: f64,
    /// Fastest round, events per second.
    pub max_per_s: f64,
    /// What the baseline is.
    pub baseline: &'static str,
    /// Median baseline messages per second.
    pub baseline_per_s: f64,
    /// `events_per_s / baseline_per_s`.
    pub ratio_to_baseline: f64,
    /// Bytes of one entry's `data` field.
    pub payload_bytes: usize,
    /// Redis only: server main-thread CPU per bus event, microseconds (median round).
    pub server_cpu_us_per_event: Option<f64>,
    /// Redis only: server main-thread CPU per baseline XADD, microseconds.
    pub server_cpu_us_per_baseline_op: Option<f64>,
}

impl std::fmt::Display for BusBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<6} publish -> consume -> atomic commit: {:>9.0} events/s median of {} x {} \
             (min {:.0}, max {:.0})\n       baseline {}: {:.0}/s; bus = {:.1}% of baseline",
            self.backend,
            self.events_per_s,
            self.rounds,
            self.events,
            self.min_per_s,
            self.max_per_s,
            self.baseline,
            self.baseline_per_s,
            self.ratio_to_baseline * 100.0
        )?;
        if let (Some(event), Some(op)) = (
            self.server_cpu_us_per_event,
            self.server_cpu_us_per_baseline_op,
        ) {
            write!(
                f,
                "\n       redis main-thread CPU: {event:.1} us per bus event vs {op:.2} us per raw XADD \
                 (one event costs as much server time as {:.1} raw XADDs)",
                event / op.max(f64::MIN_POSITIVE)
            )?;
        }
        Ok(())
    }
}

/// Median, min and max of some rates.
fn spread(mut rates: Vec<f64>) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    let min = rates.first().copied().unwrap_or(0.0);
    let max = rates.last().copied().unwrap_or(0.0);
    (median, min, max)
}

fn report(
    backend: &'static str,
    events: u64,
    rates: Vec<f64>,
    baseline: &'static str,
    baseline_rates: Vec<f64>,
    payload_bytes: usize,
) -> BusBench {
    let rounds = rates.len();
    let (median, min, max) = spread(rates);
    let (baseline_per_s, _, _) = spread(baseline_rates);
    BusBench {
        backend,
        events,
        rounds,
        events_per_s: median,
        min_per_s: min,
        max_per_s: max,
        baseline,
        baseline_per_s,
        ratio_to_baseline: median / baseline_per_s.max(f64::MIN_POSITIVE),
        payload_bytes,
        server_cpu_us_per_event: None,
        server_cpu_us_per_baseline_op: None,
    }
}

/// The payload every benchmark event carries: a realistic encoded `AlertTriaged`.
fn sample_fields() -> Result<Fields, BusError> {
    let envelope = Envelope::new_root(
        "sentinel",
        "bench-00001",
        Event::AlertTriaged(AlertTriaged {
            case: CaseContext {
                ticket: "bench-00001".into(),
                alert_ref: uuid::Uuid::now_v7().to_string(),
                site: Some("bench".into()),
                source: "suricata".into(),
                rule_id: "S-Dns-Qry3".into(),
                rule_name: "Suricata: Alert - ET INFO Observed DNS Query to .biz TLD".into(),
                host: "mail".into(),
                src_ips: vec!["192.168.1.5".into(), "203.0.113.9".into()],
                alert_count: 9,
                first_seen: "2022-01-15T00:00:01Z".into(),
                last_seen: "2022-01-15T00:09:13Z".into(),
                priority: Some(9),
                ..CaseContext::default()
            },
            verdict: TriageVerdict::TruePositive,
            confidence: 0.8,
            priority: 9,
            rationale: "rule title matches .biz tld, new; score 7".into(),
            ..AlertTriaged::default()
        }),
    );
    Fields::for_envelope(&envelope)
}

fn bench_config(namespace: String) -> BusConfig {
    BusConfig {
        namespace,
        // Keep memory bounded on long runs (trimming is part of the measured cost), but never
        // trim the input: trimmed entries are gone even when no consumer has read them yet.
        default_retention: Retention::MaxLen(200_000),
        retention: [
            (Topic::Alerts.name().to_owned(), Retention::Keep),
            (Topic::Audit.name().to_owned(), Retention::MaxLen(400_000)),
        ]
        .into_iter()
        .collect(),
        credits: 1024,
        read_batch: 256,
        block_ms: 50,
        bridge_buffer: 100_000,
        ..BusConfig::default()
    }
}

/// Measures the in-memory bus, next to a bare tokio channel.
pub async fn memory(events: u64, consumers: usize, rounds: usize) -> Result<BusBench, BusError> {
    let fields = sample_fields()?;
    let payload = fields.get("data").map_or(0, |d| d.len());
    let mut rates = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..rounds.max(1) {
        baseline.push(bare_channel(&fields, events).await);
        let bus = Bus::memory(bench_config(String::new()))?;
        rates.push(run(bus, &fields, events, consumers).await?);
    }
    Ok(report(
        "memory",
        events,
        rates,
        "bare tokio mpsc channel, task to task",
        baseline,
        payload,
    ))
}

/// Measures the Redis bus at `url` (under throwaway namespaces, deleted afterwards), next to
/// raw pipelined XADD on the same server.
pub async fn redis(
    url: &str,
    events: u64,
    consumers: usize,
    rounds: usize,
) -> Result<BusBench, BusError> {
    let fields = sample_fields()?;
    let payload = fields.get("data").map_or(0, |d| d.len());
    let mut rates = Vec::new();
    let mut baseline = Vec::new();
    let mut cpu_per_event = Vec::new();
    let mut cpu_per_op = Vec::new();
    for _ in 0..rounds.max(1) {
        let namespace = format!("bench:{}:{}:", std::process::id(), fastrand::u32(..));
        let cpu_before = server_cpu(url).await?;
        baseline.push(raw_xadd(url, &format!("{namespace}raw"), &fields, events).await?);
        let cpu_between = server_cpu(url).await?;
        cpu_per_op.push((cpu_between - cpu_before) * 1e6 / events as f64);
        let redis = RedisBus::start(url, bench_config(namespace.clone())).await?;
        let rate = run(redis.bus.clone(), &fields, events, consumers).await;
        cpu_per_event.push((server_cpu(url).await? - cpu_between) * 1e6 / events as f64);
        redis.stop(url, &namespace).await?;
        rates.push(rate?);
    }
    let mut result = report(
        "redis",
        events,
        rates,
        "raw pipelined XADD, same payload (a bus event is 4 XADD, a SET, an XACK and its share of XREADGROUP, in Lua)",
        baseline,
        payload,
    );
    result.server_cpu_us_per_event = Some(spread(cpu_per_event).0);
    result.server_cpu_us_per_baseline_op = Some(spread(cpu_per_op).0);
    Ok(result)
}

/// CPU seconds the Redis server's main thread has used (user + system).
async fn server_cpu(url: &str) -> Result<f64, BusError> {
    let client = ::redis::Client::open(url).map_err(|e| BusError::Config(e.to_string()))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = ::redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let main = field("used_cpu_user_main_thread").zip(field("used_cpu_sys_main_thread"));
    let all = field("used_cpu_user").zip(field("used_cpu_sys"));
    main.or(all)
        .map(|(user, sys)| user + sys)
        .ok_or_else(|| BusError::Protocol("INFO cpu has no CPU counters".into()))
}

/// Messages per second through a bounded tokio channel between two tasks.
async fn bare_channel(fields: &Fields, events: u64) -> f64 {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Fields>(1024);
    let started = Instant::now();
    let fields = fields.clone();
    #[allow(clippy::disallowed_methods, reason = "awaited below")]
    let producer = tokio::spawn(async move {
        for _ in 0..events {
            if tx.send(fields.clone()).await.is_err() {
                return;
            }
        }
    });
    let mut received = 0u64;
    while rx.recv().await.is_some() {
        received += 1;
    }
    let _ = producer.await;
    received as f64 / started.elapsed().as_secs_f64()
}

/// One round: events per second through publish -> consume -> commit.
async fn run(bus: Bus, fields: &Fields, events: u64, consumers: usize) -> Result<f64, BusError> {
    let group = "bench";
    bus.ensure_group(Topic::Alerts, group).await?;
    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    #[allow(clippy::disallowed_methods, reason = "awaited below")]
    let producer = {
        let bus = bus.clone();
        let fields = fields.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < events {
                let n = (events - sent).min(256);
                let batch = (sent..sent + n)
                    .map(|i| {
                        Commit::dedupe(
                            format!("bench:{i}"),
                            vec![Outgoing {
                                topic: Topic::Alerts,
                                fields: fields.clone(),
                                audit: true,
                            }],
                        )
                    })
                    .collect();
                bus.submit(batch).await?;
                sent += n;
            }
            Ok::<(), BusError>(())
        })
    };

    let mut workers = Vec::new();
    for c in 0..consumers.max(1) {
        let mut consumer = bus
            .consumer(Topic::Alerts, group, &format!("bench-consumer-{c}"))
            .await?;
        let bus = bus.clone();
        let fields = fields.clone();
        let committed = committed.clone();
        #[allow(clippy::disallowed_methods, reason = "awaited below")]
        workers.push(tokio::spawn(async move {
            // Like a role: hold credits for what was read, commit the read batch in one
            // submission (each commit still atomic on its own), return credits when done.
            let credits = Arc::new(Semaphore::new(1024));
            while committed.load(Ordering::Relaxed) < events {
                let permits = credits
                    .clone()
                    .acquire_many_owned(256)
                    .await
                    .map_err(|_| BusError::Closed)?;
                let entries = consumer.read_new(256, Duration::from_millis(20)).await?;
                if entries.is_empty() {
                    continue;
                }
                let commits = entries
                    .iter()
                    .map(|entry| {
                        Commit::ack(
                            consumer.ack_ref(entry.id),
                            vec![Outgoing {
                                topic: Topic::Triage,
                                fields: fields.clone(),
                                audit: true,
                            }],
                        )
                    })
                    .collect();
                let committed = committed.clone();
                bus.submit_with(
                    commits,
                    Box::new(move |result| {
                        if let Ok(outcomes) = result {
                            committed.fetch_add(outcomes.len() as u64, Ordering::Relaxed);
                        }
                        drop(permits);
                    }),
                )?;
            }
            Ok::<(), BusError>(())
        }));
    }
    producer
        .await
        .map_err(|e| BusError::Protocol(format!("producer panicked: {e}")))??;
    for worker in workers {
        worker
            .await
            .map_err(|e| BusError::Protocol(format!("consumer panicked: {e}")))??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Raw pipelined XADD throughput: `n` entries of `fields`, 256 per pipeline.
async fn raw_xadd(url: &str, key: &str, fields: &Fields, n: u64) -> Result<f64, BusError> {
    let client = ::redis::Client::open(url).map_err(|e| BusError::Config(e.to_string()))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(256);
        let mut pipe = ::redis::pipe();
        for _ in 0..batch {
            let cmd = pipe.cmd("XADD").arg(key).arg("*");
            for (name, value) in fields.iter() {
                cmd.arg(name).arg(value.as_ref());
            }
            cmd.ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        sent += batch;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _: () = ::redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
    Ok(rate)
}

/// Deletes every key under `namespace`.
/// A Redis bus with its bridge actor running, for one measurement.
pub(crate) struct RedisBus {
    /// The bus.
    pub(crate) bus: Bus,
    bridge: ractor::ActorRef<bridge::Msg>,
    join: tokio::task::JoinHandle<()>,
}

impl RedisBus {
    /// Connects the bus and starts its bridge.
    pub(crate) async fn start(url: &str, config: BusConfig) -> Result<RedisBus, BusError> {
        let (writer, queue) = bridge::queue(config.bridge_buffer);
        let bus = Bus::redis(url, config.clone(), writer).await?;
        let (bridge, join) = Actor::spawn(
            None,
            BusBridge,
            bridge::Args {
                url: url.to_owned(),
                config,
                queue,
            },
        )
        .await
        .map_err(|e| BusError::Config(format!("cannot start the bus bridge: {e}")))?;
        Ok(RedisBus { bus, bridge, join })
    }

    /// Stops the bridge and deletes the measurement's keys.
    pub(crate) async fn stop(self, url: &str, namespace: &str) -> Result<(), BusError> {
        self.bridge.stop(None);
        let _ = self.join.await;
        delete_namespace(url, namespace).await
    }
}

async fn delete_namespace(url: &str, namespace: &str) -> Result<(), BusError> {
    let client = ::redis::Client::open(url).map_err(|e| BusError::Config(e.to_string()))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = ::redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
