//! `soc-runtime bench ingest`: raw alerts through ingest and grouping until their cases are
//! published on the bus, measured against a baseline in the same run.
//!
//! - Baseline: reading the same file line by line (decompressing it when gzip), parsing
//!   nothing: the floor any ingest pays.
//! - Grouping: the feed reader the alert source runs (format recognised, each record parsed
//!   and validated, folded into cases, each case re-validated as a ticket).
//! - End to end: grouping, then each case published as an `AlertReceived` with its dedupe key
//!   through the bus (memory, or Redis through the real bus bridge), in the alert source's
//!   batches.
//!
//! Also: the process's peak resident memory while the file streams through (the kernel's
//! high-water mark, reset before the measured run), and the model calls grouping saves
//! (cases per 1,000 raw alerts: each case, not each alert, reaches a role).

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::bus::{Bus, BusConfig, BusError, Retention, Topic};
use crate::ingest::format::FeedConfig;
use crate::ingest::jsonl::{FeedLine, FeedReader};

/// Cases per bus submission, as the alert source batches them.
const BATCH: usize = 256;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum IngestBenchError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// The file holds no raw alert that groups into a case.
    #[error("{0} holds no alert that groups into a case")]
    Empty(String),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct IngestBench {
    /// The file read.
    pub file: String,
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Raw alerts in the file (the cases' alert counts).
    pub raw_alerts: u64,
    /// Cases they were grouped into.
    pub cases: u64,
    /// Lines refused.
    pub rejected: u64,
    /// Cases per 1,000 raw alerts: the model calls left of every 1,000 alerts.
    pub cases_per_1000: f64,
    /// Baseline: raw alerts' lines read per second, parsing nothing.
    pub read_only_per_s: f64,
    /// Raw alerts per second parsed and grouped.
    pub grouped_per_s: f64,
    /// Raw alerts per second parsed, grouped and published as cases on the bus.
    pub end_to_end_per_s: f64,
    /// `end_to_end_per_s / read_only_per_s`.
    pub ratio_to_baseline: f64,
    /// Peak resident memory of the process while the file streamed through, MiB.
    pub peak_rss_mib: Option<f64>,
}

impl std::fmt::Display for IngestBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ingest {}: {} raw alerts -> {} cases ({:.1} per 1,000 alerts), {} lines refused\n\
             \x20 baseline, reading lines only: {:>10.0} alerts/s\n\
             \x20 parsed + grouped:             {:>10.0} alerts/s\n\
             \x20 + published on the {} bus: {:>10.0} alerts/s = {:.1}% of the baseline\n\
             \x20 peak resident memory: {}",
            self.file,
            self.raw_alerts,
            self.cases,
            self.cases_per_1000,
            self.rejected,
            self.read_only_per_s,
            self.grouped_per_s,
            self.backend,
            self.end_to_end_per_s,
            self.ratio_to_baseline * 100.0,
            self.peak_rss_mib
                .map_or_else(|| "unknown".to_owned(), |m| format!("{m:.0} MiB")),
        )
    }
}

/// Runs the benchmark on `path`, publishing on Redis at `redis_url` when given (its keys
/// under a scratch namespace, deleted after), else on the memory bus.
pub async fn run(path: &Path, redis_url: Option<&str>) -> Result<IngestBench, IngestBenchError> {
    let shown = path.display().to_string();
    let read_err = |e| IngestBenchError::Read(shown.clone(), e);
    // Baseline first, so the file is in the page cache for every side alike. The file is read
    // on this task: nothing else runs beside a benchmark.
    let (lines, read_s) = read_lines(path).map_err(read_err)?;
    let grouped = group(path).map_err(read_err)?;
    let (cases, rejected, raw_alerts) = tally(&grouped.0);
    let grouped_s = grouped.1;
    drop(grouped);
    if cases == 0 {
        return Err(IngestBenchError::Empty(shown));
    }

    reset_peak_rss();
    let started = Instant::now();
    let (lines_read, _) = group(path).map_err(read_err)?;
    let namespace = format!("bench-ingest:{}:{}:", std::process::id(), fastrand::u32(..));
    let config = BusConfig {
        namespace: namespace.clone(),
        retention: [(Topic::Alerts.name().to_owned(), Retention::Keep)]
            .into_iter()
            .collect(),
        ..BusConfig::default()
    };
    let backend = match redis_url {
        None => {
            publish(Bus::memory(config)?, lines_read).await?;
            "memory"
        }
        Some(url) => {
            let redis = super::bus::RedisBus::start(url, config).await?;
            let published = publish(redis.bus.clone(), lines_read).await;
            redis.stop(url, &namespace).await?;
            published?;
            "redis"
        }
    };
    let end_to_end_s = started.elapsed().as_secs_f64();
    let peak_rss_mib = peak_rss_kib().map(|k| k as f64 / 1024.0);
    let per_s = |s: f64| raw_alerts as f64 / s.max(1e-9);
    let read_only_per_s = lines as f64 / read_s.max(1e-9);
    Ok(IngestBench {
        file: shown,
        backend,
        raw_alerts,
        cases,
        rejected,
        cases_per_1000: cases as f64 * 1000.0 / raw_alerts.max(1) as f64,
        read_only_per_s,
        grouped_per_s: per_s(grouped_s),
        end_to_end_per_s: per_s(end_to_end_s),
        ratio_to_baseline: per_s(end_to_end_s) / read_only_per_s.max(1e-9),
        peak_rss_mib,
    })
}

/// Lines in the file, and the seconds it took to read them.
fn read_lines(path: &Path) -> std::io::Result<(u64, f64)> {
    let started = Instant::now();
    let mut reader = crate::ingest::open_text(path)?;
    let mut buf = Vec::new();
    let mut lines = 0u64;
    while reader.read_until(b'\n', &mut buf)? > 0 {
        if !buf.trim_ascii().is_empty() {
            lines += 1;
        }
        buf.clear();
    }
    Ok((lines, started.elapsed().as_secs_f64()))
}

/// The feed reader's output over the file, and the seconds it took.
fn group(path: &Path) -> std::io::Result<(Vec<FeedLine>, f64)> {
    let started = Instant::now();
    let lines = FeedReader::open(path, &FeedConfig::default())?.collect::<Result<Vec<_>, _>>()?;
    Ok((lines, started.elapsed().as_secs_f64()))
}

/// Cases, rejected lines, and raw alerts in the cases.
fn tally(lines: &[FeedLine]) -> (u64, u64, u64) {
    let mut cases = 0;
    let mut rejected = 0;
    let mut raw = 0u64;
    for line in lines {
        match &line.alert {
            Ok(alert) => {
                cases += 1;
                raw += u64::from(alert.alert_count);
            }
            Err(_) => rejected += 1,
        }
    }
    (cases, rejected, raw)
}

/// Publishes every case as the alert source does.
async fn publish(bus: Bus, lines: Vec<FeedLine>) -> Result<(), BusError> {
    let mut batch = Vec::with_capacity(BATCH);
    for line in lines {
        let Ok(alert) = line.alert else { continue };
        batch.push(crate::ingest::case_commit(
            alert,
            line.update,
            "bench",
            "source:bench",
        )?);
        if batch.len() == BATCH {
            bus.submit(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        bus.submit(batch).await?;
    }
    Ok(())
}

/// Resets the kernel's peak-RSS mark of this process (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, KiB (`VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
