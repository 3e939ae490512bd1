//! `soc-runtime bench memory`: case memory at scale, on a real SQLite file.
//!
//! Builds `n` synthetic cases (an `AlertReceived` and an `AlertTriaged` each) over five sites
//! with a realistic spread of values: a few hundred rules, internal hosts and addresses per
//! site, public IPs and domains drawn with a heavy head (some everywhere, most rare), and small
//! planted campaigns. Then measures the fold (the projector's path), recall latency over
//! random tickets, and campaign clustering over the whole set.
//!
//! [`write_audit`] writes the same synthetic log to a Redis audit stream instead, so that
//! `memory rebuild` can be timed on a log of any size.

use std::time::Instant;

use serde::Serialize;

use crate::bus::{BusError, Fields, StreamId, Topic};
use crate::memory::{self, CampaignOptions, RecallOptions};
use crate::proto::{Alert, AlertReceived, AlertTriaged, CaseContext, Envelope, Event};
use crate::store::projection::{Timelines, prepare};
use crate::store::{FOLD_PAGE, Read, Store, StoreError, fold_pages};

/// The results.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryBench {
    /// Cases folded.
    pub cases: u64,
    /// Audit entries folded per second.
    pub fold_entries_per_s: f64,
    /// Recalls measured.
    pub recalls: usize,
    /// Recall latency, median, ms.
    pub recall_p50_ms: f64,
    /// Recall latency, 99th percentile, ms.
    pub recall_p99_ms: f64,
    /// Campaign clustering over all cases, ms.
    pub clustering_ms: f64,
    /// Campaigns found.
    pub campaigns: usize,
    /// Store file size, bytes.
    pub store_bytes: u64,
}

impl std::fmt::Display for MemoryBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "case memory at {} cases: fold {:.0} audit entries/s; recall p50 {:.2} ms, p99 {:.2} ms \
             ({} recalls); campaign clustering {:.0} ms ({} campaigns); store {:.1} MB",
            self.cases,
            self.fold_entries_per_s,
            self.recall_p50_ms,
            self.recall_p99_ms,
            self.recalls,
            self.clustering_ms,
            self.campaigns,
            self.store_bytes as f64 / 1e6
        )
    }
}

/// A value from a pool of `n` with a heavy head: low indexes are drawn far more often.
fn skewed(rng: &mut fastrand::Rng, n: u64) -> u64 {
    let x = rng.f64();
    ((x * x * x) * n as f64) as u64
}

fn case_events(rng: &mut fastrand::Rng, i: u64) -> [Envelope; 2] {
    const SITES: [&str; 5] = ["fox", "santos", "shaw", "wardbeck", "russellmitchell"];
    let site = SITES[(i % 5) as usize];
    let campaign = (i % 1000 < 5).then_some(i / 1000);
    let minute = i / 2;
    let stamp = |m: u64| {
        chrono::DateTime::from_timestamp(1_767_225_600 + m as i64 * 60, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    let public_ip = match campaign {
        Some(c) => format!("185.220.{}.{}", c / 250, c % 250 + 1),
        None => {
            let v = skewed(rng, 20_000);
            format!("45.{}.{}.{}", 10 + v / 65_536, (v / 256) % 256, v % 256)
        }
    };
    let domain = match campaign {
        Some(c) => format!("c2-{c}.biz"),
        None => format!("site{}.com", skewed(rng, 5_000)),
    };
    let ticket = format!("{site}-{i:07}");
    let alert = Alert {
        ticket_id: ticket.clone(),
        site: Some(site.to_owned()),
        source: "suricata".into(),
        rule_id: format!("R-{}", skewed(rng, 300)),
        rule_name: format!("connection to {domain} from {public_ip}"),
        host: format!("host-{}", rng.u32(0..200)),
        src_ips: vec![
            format!("10.0.{}.{}", rng.u8(0..2), rng.u8(1..250)),
            public_ip,
        ],
        first_seen: stamp(minute),
        last_seen: stamp(minute + 1),
        alert_count: 1,
        ..Alert::default()
    };
    let received = Envelope::new_root(
        "source:bench",
        &ticket,
        Event::AlertReceived(AlertReceived {
            alert: alert.clone(),
            received_via: "bench".into(),
        }),
    );
    let triaged = received.caused(
        "sentinel",
        Event::AlertTriaged(AlertTriaged {
            case: CaseContext::from_alert(&alert, &received.id.to_string()),
            confidence: rng.f32(),
            priority: rng.u8(1..=10),
            rationale: format!("seen {domain} before"),
            ..AlertTriaged::default()
        }),
    );
    [received, triaged]
}

/// Runs the benchmark with `cases` cases and `recalls` recalls.
pub async fn run(cases: u64, recalls: usize) -> Result<MemoryBench, StoreError> {
    let dir = tempfile::tempdir()
        .map_err(|e| StoreError::Open("a scratch directory".into(), sqlx::Error::Io(e)))?;
    let path = dir.path().join("bench.db");
    let store = Store::open_for_fold(&path).await?;
    let started = Instant::now();
    // As the projector catches up ([`crate::store::catch_up`]): pages of FOLD_PAGE entries,
    // made, decoded and prepared by the reader task, FOLD_TX_PAGES folded to a transaction.
    let mut rng = fastrand::Rng::with_seed(42);
    let (mut seq, mut made) = (0u64, 0u64);
    let pages = std::iter::from_fn(move || {
        let mut page = Vec::with_capacity(FOLD_PAGE);
        while page.len() + 2 <= FOLD_PAGE && made < cases {
            for envelope in case_events(&mut rng, made) {
                seq += 1;
                page.push((StreamId { ms: 1, seq }, envelope));
            }
            made += 1;
        }
        let last = page.last().map(|(id, _)| *id)?;
        Some(Ok(Read {
            read: page.len(),
            decoded: page.len(),
            page: prepare(&page, Timelines::Kept),
            last: Some(last),
        }))
    });
    let folded = fold_pages(
        &store,
        "bench",
        StreamId::ZERO,
        futures_util::stream::iter(pages),
        None,
        |_| {},
    )
    .await?;
    let entries = folded.entries;
    let fold_s = started.elapsed().as_secs_f64();
    store.close().await;
    // Recall as the runtime's roles run it: on a store opened for reading.
    let store = Store::open(&path).await?;
    let mut rng = fastrand::Rng::with_seed(43);
    let mut latencies = Vec::with_capacity(recalls);
    for _ in 0..recalls {
        let i = rng.u64(0..cases);
        const SITES: [&str; 5] = ["fox", "santos", "shaw", "wardbeck", "russellmitchell"];
        let ticket = format!("{}-{i:07}", SITES[(i % 5) as usize]);
        let t = Instant::now();
        let _ = memory::recall(store.pool(), &ticket, RecallOptions::default()).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let t = Instant::now();
    let found = memory::campaigns(store.pool(), CampaignOptions::default()).await?;
    let clustering_ms = t.elapsed().as_secs_f64() * 1e3;
    store.close().await;
    let store_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    Ok(MemoryBench {
        cases,
        fold_entries_per_s: entries as f64 / fold_s,
        recalls,
        recall_p50_ms: at(0.5),
        recall_p99_ms: at(0.99),
        clustering_ms,
        campaigns: found.len(),
        store_bytes,
    })
}

/// Audit entries per pipeline when writing the synthetic log to Redis.
const WRITE_BATCH: usize = 500;

/// Writes the synthetic log of `cases` cases (the entries [`run`] folds, in the same order) to
/// the `soc.audit` stream of `namespace` on the Redis at `url`, each entry as a run's commit
/// writes it (the domain message's fields, then `topic` and `topic_id`; no topic streams).
/// Refuses a namespace whose audit has entries already: this never adds to a real SOC's log.
/// Returns the entries written.
pub async fn write_audit(url: &str, namespace: &str, cases: u64) -> Result<u64, BusError> {
    let key = crate::bus::writer::Keys::new(namespace)
        .stream(Topic::Audit)
        .to_owned();
    let client = ::redis::Client::open(url).map_err(|e| BusError::Config(e.to_string()))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let existing: u64 = ::redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await?;
    if existing > 0 {
        return Err(BusError::Config(format!(
            "{key} holds {existing} entries already: write the synthetic audit to an empty \
             namespace (--namespace)"
        )));
    }
    let mut rng = fastrand::Rng::with_seed(42);
    let mut written = 0u64;
    let mut pipe = ::redis::pipe();
    let mut queued = 0;
    for case in 0..cases {
        for envelope in case_events(&mut rng, case) {
            let fields = Fields::for_envelope(&envelope)?;
            let topic = Topic::of(&envelope.event);
            let cmd = pipe.cmd("XADD").arg(&key).arg("*");
            for (name, value) in fields.iter() {
                cmd.arg(name).arg(value.as_ref());
            }
            // No topic stream is written, so the topic entry id is a placeholder (nothing
            // reads it back).
            cmd.arg(crate::bus::wire::F_TOPIC)
                .arg(topic.name())
                .arg(crate::bus::wire::F_TOPIC_ID)
                .arg("0-0")
                .ignore();
            queued += 1;
        }
        if queued >= WRITE_BATCH || case + 1 == cases {
            let () = pipe.query_async(&mut conn).await?;
            written += queued as u64;
            queued = 0;
            pipe = ::redis::pipe();
        }
    }
    Ok(written)
}
