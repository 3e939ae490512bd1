//! `backtest`: labelled tickets replayed through the real roles, scored against the analysts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tokio_util::task::AbortOnDropHandle;

#[derive(Args)]
pub(crate) struct BacktestArgs {
    /// Labelled tickets (JSONL, plain or gzip, with `ground_truth`: escalate | close), e.g.
    /// ../shared/datasets/ait-ads/tickets-dev.jsonl.gz.
    #[arg(long, value_name = "FILE", required_unless_present = "alerts")]
    tickets: Option<PathBuf>,
    /// Instead of --tickets: raw alerts in any format `run --alerts` reads (e.g.
    /// ../shared/datasets/ait-ads/alerts-dev.csv.gz), grouped into cases by the runtime and
    /// labelled by the --labels ticket with the same grouping key (site, host, rule, hour).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "tickets",
        requires = "labels"
    )]
    alerts: Option<PathBuf>,
    /// Labelled tickets for --alerts' cases.
    #[arg(long, value_name = "FILE", requires = "alerts")]
    labels: Option<PathBuf>,
    /// Only these sites (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', value_name = "SITE")]
    sites: Vec<String>,
    /// Replay a random sample of this many tickets.
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// With --sample: draw escalate and close tickets 50/50.
    #[arg(long, requires = "sample")]
    stratify: bool,
    /// Seed of the sample.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write a self-contained HTML report (confusion matrix, per-site bars, latency).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write every ticket's outcome as JSON lines (ticket, site, rule, host, triage's
    /// probability, whether it escalated, what the analysts decided).
    #[arg(long, value_name = "FILE")]
    decisions: Option<PathBuf>,
    /// A saved summary to compare against: exit 1 if F1 or recall fell by more than
    /// --max-drop.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Largest tolerated drop of F1 or recall against --baseline.
    #[arg(long, default_value_t = 0.05, requires = "baseline")]
    max_drop: f64,
    /// Past labelled tickets whose dispositions are known before the replay (the rules
    /// reasoner's priors). Tickets that are also replayed are left out of it.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Let each replayed ticket's disposition become known this much ticket time after its
    /// last alert (e.g. 4h, 2d), as analysts close tickets; the score's fit simulates the same
    /// lag. Off by default; zero is refused (a ticket would see its own label).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    feedback_delay: Option<std::time::Duration>,
    /// Replay each site with the other sites' dispositions (of --history, or of --tickets)
    /// as history, and score all sites together.
    #[arg(long)]
    leave_one_site_out: bool,
    /// Decide each case as a followed file, a stream or HTTP push first shows it: at its
    /// first alert, then (with --updates) re-assessed when the whole case follows as an update
    /// at its last alert; to see what deciding early costs.
    #[arg(long)]
    at_first_alert: bool,
    /// With --at-first-alert: each case's repeats follow as a case update at its last alert.
    #[arg(long, requires = "at_first_alert")]
    updates: bool,
    /// Give the roles a canned-answer model server instead of a model (hybrid reasoning): the
    /// whole model path runs, nothing is decided by a model.
    #[arg(long, conflicts_with = "config")]
    dry_run: bool,
    /// Config file whose [llm], [reasoning], [tools] and [rulesets] sections the replay uses
    /// (SOC_LLM_* variables apply on top); everything else is the backtest's own (memory bus,
    /// HTTP off, scratch stores, no site connectors: a live EDR knows nothing of a replayed
    /// ticket's time). Without it the roles use their rules reasoners and no vendor rulesets.
    /// ops/backtest-ait-ads.toml points [rulesets] at ../shared/datasets.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override `[reasoning] precedent`: give the model the case's precedent (on) or not
    /// (off), for an A/B run.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    precedent: Option<bool>,
}

/// A switch that is neither `on` nor `off`.
#[derive(Debug, thiserror::Error)]
#[error("expected on or off, not {0:?}")]
pub(crate) struct NotOnOff(String);

fn parse_on_off(value: &str) -> Result<bool, NotOnOff> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(NotOnOff(value.to_owned())),
    }
}

pub(crate) async fn backtest(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::backtest::{self, Selection, SelectionSummary};
    // Read the baseline first: a typo there should not cost a whole replay.
    let baseline = match &args.baseline {
        Some(path) => Some(backtest::load_summary(path)?),
        None => None,
    };
    if !(0.0..=1.0).contains(&args.max_drop) {
        anyhow::bail!("--max-drop must be between 0 and 1");
    }
    let selection = Selection {
        sites: args.sites.clone(),
        sample: args.sample,
        stratify: args.stratify,
        seed: args.seed,
    };
    let mut config = super::load_config(args.config.as_deref())?;
    let data_dir = config.data_dir.clone();
    if let Some(on) = args.precedent {
        config.reasoning.precedent = on;
    }
    config.validate()?;
    if args.feedback_delay.is_some_and(|d| d.is_zero()) {
        anyhow::bail!(backtest::BacktestError::ZeroDelay);
    }
    // The replay's scratch store is created (a new SQLite file through every migration) on
    // another task while the tickets are read. Each site of a leave-one-site-out run makes
    // its own.
    let scratch = (!args.leave_one_site_out).then(|| {
        #[allow(
            clippy::disallowed_methods,
            reason = "owned here (AbortOnDropHandle) and awaited before the replay"
        )]
        AbortOnDropHandle::new(tokio::spawn(backtest::Scratch::new()))
    });
    let (mut tickets, file) = match (&args.tickets, &args.alerts, &args.labels) {
        (Some(path), ..) => (
            backtest::load_selected(path, &selection)?,
            path.display().to_string(),
        ),
        (None, Some(alerts), Some(labels)) => {
            let (tickets, join) = backtest::load_grouped(alerts, labels)?;
            eprintln!(
                "grouped {} into {} cases, {} of them labelled by {} ({} labels unmatched, {} \
                 ambiguous, {} alert lines refused)",
                alerts.display(),
                join.cases,
                join.labelled,
                labels.display(),
                join.labels_unmatched,
                join.labels_ambiguous,
                join.rejected_lines
            );
            if tickets.is_empty() {
                anyhow::bail!(
                    "no case of {} has a label in {}: nothing to score",
                    alerts.display(),
                    labels.display()
                );
            }
            (
                backtest::select(tickets, &selection),
                format!("{} (labels {})", alerts.display(), labels.display()),
            )
        }
        _ => anyhow::bail!("give --tickets, or --alerts with --labels"),
    };
    if args.at_first_alert {
        tickets = tickets
            .into_iter()
            .map(|t| t.at_first_alert(args.updates))
            .collect();
    }
    let vendor = std::sync::Arc::new(soc_runtime::judgment::vendor::Vendor::load(
        &config.rulesets,
    )?);
    let priors = backtest::Setup {
        history: match &args.history {
            Some(path) => backtest::load_tickets(path)?,
            None => Vec::new(),
        },
        history_source: args.history.as_ref().map(|p| p.display().to_string()),
        feedback_delay_ms: match args.feedback_delay {
            Some(d) => Some(
                i64::try_from(d.as_millis())
                    .map_err(|_| anyhow::anyhow!("--feedback-delay is too long"))?,
            ),
            None => None,
        },
        dry_run: args.dry_run,
        model: (config.llm, config.reasoning),
        tools: config.tools,
        vendor,
        keep_assessments: args.decisions.is_some(),
    };
    let selection = SelectionSummary {
        file,
        sites: args.sites,
        sample: args.sample,
        stratify: args.stratify,
        seed: args.seed,
        leave_one_site_out: args.leave_one_site_out,
        at_first_alert: args.at_first_alert,
        updates: args.updates,
    };
    let summary = match scratch {
        None => backtest::leave_one_site_out(tickets, selection, &priors).await?,
        Some(scratch) => {
            let scratch = scratch
                .await
                .map_err(|e| anyhow::anyhow!("creating the replay's scratch store: {e}"))??;
            backtest::run_in(scratch, tickets, selection, &priors).await?
        }
    };
    print!("{summary}");
    // The dashboard shows the latest backtest.
    let last = data_dir.join("last-backtest.json");
    let kept = std::fs::create_dir_all(&data_dir)
        .and_then(|()| std::fs::write(&last, serde_json::to_string_pretty(&summary)?));
    if let Err(e) = kept {
        tracing::warn!(path = %last.display(), error = %e, "cannot keep the backtest summary");
    }
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.decisions {
        let mut text = String::new();
        for d in &summary.decisions {
            text.push_str(&serde_json::to_string(d)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, backtest::report_html(&summary))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(baseline) = baseline {
        let fell = backtest::regressions(&summary, &baseline, args.max_drop);
        if !fell.is_empty() {
            for f in &fell {
                eprintln!("backtest gate: {f}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
