//! `memory rebuild | import | trends`: the verdict store and case memory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use soc_runtime::app::config::Backend;

use super::{StoreArgs, open_store};

#[derive(Subcommand)]
pub(crate) enum MemoryCommand {
    /// Rebuild the verdict store from soc.audit on Redis: forget its rows and checkpoint, fold
    /// the whole audit again. The result equals what the live projection wrote.
    Rebuild(MemoryArgs),
    /// Record analysts' dispositions (`ground_truth`: escalate | close) from a labelled
    /// tickets file: the verdict store and recall show them, trends score against them.
    Import(MemoryImportArgs),
    /// Per-role counts, confidence, tool calls, latency, tokens and accuracy against known
    /// dispositions (sentinel and tier2, on escalation).
    Trends(MemoryTrendsArgs),
}

#[derive(Args)]
pub(crate) struct MemoryImportArgs {
    /// Labelled tickets (JSONL, plain or gzip), as for `backtest --tickets`.
    #[arg(long, value_name = "FILE")]
    tickets: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct MemoryTrendsArgs {
    /// Only decisions made in the last this many days (0: all).
    #[arg(long, default_value_t = 0)]
    days: i64,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct MemoryArgs {
    /// Config file (its [bus] section and data_dir; SOC_* variables apply on top).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Redis URL (default from the config).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Data directory holding the store (default from the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs a `memory` command.
pub(crate) async fn dispatch(command: MemoryCommand) -> anyhow::Result<ExitCode> {
    match command {
        MemoryCommand::Rebuild(args) => memory_rebuild(args).await,
        MemoryCommand::Import(args) => memory_import(args).await,
        MemoryCommand::Trends(args) => memory_trends(args).await,
    }
}

async fn memory_rebuild(args: MemoryArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::store::{self, Store};
    let mut config = super::load_config(args.config.as_deref())?;
    if let Some(url) = args.redis_url {
        config.bus.redis_url = url;
        config.bus.backend = Backend::Redis;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    config.validate()?;
    if config.bus.backend != Backend::Redis {
        anyhow::bail!(
            "the in-memory bus keeps no audit between runs, so there is nothing to rebuild \
             from: use --redis-url (or SOC_BUS=redis)"
        );
    }
    let url = soc_runtime::secret::redact_url(&config.bus.redis_url);
    // Read-only use: the writer queue is never flushed because nothing is written.
    let (writer, _queue) = soc_runtime::bus::bridge::queue(1);
    let bus =
        soc_runtime::bus::Bus::redis(&config.bus.redis_url, config.bus.settings.clone(), writer)
            .await
            .with_context(|| format!("cannot reach redis at {url}"))?;
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join(store::FILE);
    let store = Store::open_for_fold(&path).await?;
    let projection = store::projection_name(&bus);
    store.bind_projection(&projection).await?;
    let started = std::time::Instant::now();
    store.reset(&projection).await?;
    let folded = store::catch_up(&bus, &store, &projection, None).await?;
    store.checkpoint_wal().await?;
    store.close().await;
    if folded.skipped > 0 {
        anyhow::bail!(
            "{} audit entries could not be decoded: the rebuilt store is incomplete",
            folded.skipped
        );
    }
    println!(
        "rebuilt {} from {} audit entries: {} verdict rows, checkpoint {} ({:.2} s)",
        path.display(),
        folded.entries,
        folded.rows,
        folded.checkpoint,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn memory_import(args: MemoryImportArgs) -> anyhow::Result<ExitCode> {
    let tickets = soc_runtime::backtest::load_tickets(&args.tickets)?;
    let dispositions: Vec<_> = tickets.iter().map(|t| t.disposition(i64::MIN)).collect();
    let store = open_store(args.store).await?;
    let source = format!("import:{}", args.tickets.display());
    let written = store.import_dispositions(&dispositions, &source).await?;
    // Each also goes on the bus as a `DispositionRecorded` (relayed from the outbox by the next
    // run), so the audit keeps it and every process's reasoner learns it.
    let events: Vec<_> = tickets
        .iter()
        .filter_map(|t| {
            let alert = soc_runtime::ingest::jsonl::parse_line(t.feed_line().as_bytes()).ok()?;
            let envelope = soc_runtime::proto::Envelope::new_root(
                "memory-import",
                &t.id,
                soc_runtime::proto::Event::DispositionRecorded(
                    soc_runtime::proto::DispositionRecorded {
                        case: soc_runtime::proto::CaseContext::from_alert(&alert, ""),
                        disposition: t.ground_truth,
                        by: source.clone(),
                        origin: "history".into(),
                        known_at_ms: t.last_ms,
                        reason: None,
                    },
                ),
            );
            Some((format!("disposition:{}:history", t.id), envelope))
        })
        .collect();
    let queued = store.queue_outbox(&events).await?;
    store.close().await;
    println!(
        "recorded {written} dispositions from {} ({queued} queued for the bus)",
        args.tickets.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn memory_trends(args: MemoryTrendsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.store).await?;
    let now = soc_runtime::proto::now_ms();
    let from = if args.days > 0 {
        now.saturating_sub(args.days.saturating_mul(86_400_000))
    } else {
        0
    };
    let trends = soc_runtime::memory::trends(store.pool(), from, i64::MAX).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trends)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  {:<14}{:>10}{:>12}{:>11}{:>14}{:>16}{:>10}{:>10}",
        "role",
        "decisions",
        "confidence",
        "tool calls",
        "mean wall ms",
        "tokens in/out",
        "judged",
        "accuracy"
    );
    for t in &trends {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        println!(
            "  {:<14}{:>10}{:>12}{:>11}{:>14.3}{:>16}{:>10}{:>10}",
            t.role,
            t.decisions,
            opt(t.mean_confidence),
            t.tool_calls,
            t.mean_wall_ms,
            format!("{}/{}", t.tokens_in, t.tokens_out),
            t.judged,
            opt(t.accuracy)
        );
    }
    Ok(ExitCode::SUCCESS)
}
