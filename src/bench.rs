//! `soc-runtime bench bus`: bus throughput, measured against a baseline in the same run.
//!
//! The measured path is the one the SOC runs: a producer publishes events with dedupe keys
//! (ingestion), consumers read them through consumer groups, and each input is committed on
//! its own (ack + one output + audit copies) the way a role commits. On Redis the commits go
//! through the real bus bridge actor. The baseline on Redis is raw pipelined `XADD` of entries
//! of the same size, measured on the same server moments before, as `redis-benchmark -t xadd`
//! would (but with our payload).

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
    /// Events pushed through publish -> consume -> commit.
    pub events: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// Redis only: raw pipelined XADD per second on the same server, same entry size.
    pub raw_xadd_per_s: Option<f64>,
    /// Redis only: `events_per_s / raw_xadd_per_s`.
    pub fraction_of_raw_xadd: Option<f64>,
    /// Bytes of one entry's `data` field.
    pub payload_bytes: usize,
}

impl std::fmt::Display for BusBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<7} {:>9} events in {:>7.3} s: {:>10.0} events/s",
            self.backend, self.events, self.seconds, self.events_per_s
        )?;
        if let (Some(raw), Some(frac)) = (self.raw_xadd_per_s, self.fraction_of_raw_xadd) {
            write!(
                f,
                "   (raw pipelined XADD {raw:.0}/s; end-to-end = {:.1}% of it, each event costing 4 XADD + XACK + SET + its share of XREADGROUP)",
                frac * 100.0
            )?;
        }
        Ok(())
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

/// Measures the in-memory bus.
pub async fn memory(events: u64, consumers: usize) -> Result<BusBench, BusError> {
    let bus = Bus::memory(bench_config(String::new()))?;
    run(bus, events, consumers, None).await
}

/// Measures the Redis bus at `url` (under a throwaway namespace, deleted afterwards), with a
/// raw XADD baseline first.
pub async fn redis(url: &str, events: u64, consumers: usize) -> Result<BusBench, BusError> {
    let namespace = format!("bench:{}:{}:", std::process::id(), fastrand::u32(..));
    let fields = sample_fields()?;
    let raw = raw_xadd(
        url,
        &format!("{namespace}raw"),
        &fields,
        events.min(200_000),
    )
    .await?;

    let config = bench_config(namespace.clone());
    let (writer, queue) = bridge::queue(config.bridge_buffer);
    let bus = Bus::redis(url, config.clone(), writer).await?;
    let (bridge_ref, bridge_join) = Actor::spawn(
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
    let result = run(bus, events, consumers, Some(raw)).await;
    bridge_ref.stop(None);
    let _ = bridge_join.await;
    delete_namespace(url, &namespace).await?;
    result
}

async fn run(
    bus: Bus,
    events: u64,
    consumers: usize,
    raw_xadd_per_s: Option<f64>,
) -> Result<BusBench, BusError> {
    let fields = sample_fields()?;
    let payload_bytes = fields.get("data").map_or(0, |d| d.len());
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
    let seconds = started.elapsed().as_secs_f64();
    let events_per_s = events as f64 / seconds;
    Ok(BusBench {
        backend: bus.backend_name(),
        events,
        seconds,
        events_per_s,
        raw_xadd_per_s,
        fraction_of_raw_xadd: raw_xadd_per_s.map(|raw| events_per_s / raw),
        payload_bytes,
    })
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
