//! The replay harness: the real runtime over a scratch feed, feedback published as the
//! analysts' dispositions, the result scored.
//!
//! Each replay runs in a [`Scratch`]: a temporary directory with the feed and the runtime's
//! store, made (migrated) before the replay starts, scored from, and removed when it ends. Its
//! store skips the cases' timelines unless `--decisions` reads them
//! ([`crate::store::Timelines`]). Nothing outlives the process: an interrupted replay leaves
//! nothing to resume, and is run again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::score::{
    PriorsSummary, Scores, SelectionSummary, Summary, TicketOutcome, calibration, cold_start,
    round, score,
};
use super::tickets::{Ticket, TicketsError, history_for, write_feed};
use crate::app::config::{Backend, Config};
use crate::app::runtime::{Runtime, StartError};
use crate::knowledge::{DispositionFacts, Knowledge};
use crate::llm::stats::ModelCost;
use crate::store::{DecisionRow, Store, StoreError};
use crate::supervisor::{ExitReason, RuntimeOptions};

/// Backtest errors.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The tickets could not be read.
    #[error(transparent)]
    Tickets(#[from] TicketsError),
    /// A feedback delay that would let a ticket see its own disposition.
    #[error(
        "--feedback-delay must be longer than zero: a ticket's disposition becomes known only \
         after its last alert, and its own decision must never see it"
    )]
    ZeroDelay,
    /// The rulesets could not be read.
    #[error(transparent)]
    Rulesets(#[from] crate::judgment::vendor::VendorError),
    /// Nothing to replay.
    #[error("no tickets selected (check --sites and the file)")]
    Empty,
    /// The scratch area failed.
    #[error("backtest scratch directory: {0}")]
    Scratch(#[source] std::io::Error),
    /// The runtime did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The runtime failed during the replay.
    #[error("the replay did not finish cleanly: {0}")]
    Replay(String),
    /// The run's store could not be read.
    #[error("reading the replay's store: {0}")]
    Store(#[from] StoreError),
}

/// What a replay knows before it starts, what it learns as it goes, and its model.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Tickets whose dispositions are known before the replay (`--history`). A ticket that is
    /// also replayed is left out of the history.
    pub history: Vec<Ticket>,
    /// Where the history came from, for the summary.
    pub history_source: Option<String>,
    /// `--feedback-delay`: each replayed ticket's disposition becomes known this long (ms)
    /// after its last alert, the way analysts close tickets. Off when `None`.
    pub feedback_delay_ms: Option<i64>,
    /// `--dry-run`: the roles' model is the canned-answer server ([`crate::llm::canned`]),
    /// so the model path runs end to end without a model; hybrid reasoning.
    pub dry_run: bool,
    /// The model endpoints and reasoning settings (`--config`); no endpoints: rules only.
    pub model: (crate::llm::LlmConfig, crate::app::config::ReasoningConfig),
    /// The roles' tools (`--config`'s `[tools]`); site connectors are always left out.
    pub tools: crate::tools::ToolsConfig,
    /// The detector vendors' rulesets (`--config`'s `[rulesets]`).
    pub vendor: Arc<crate::judgment::vendor::Vendor>,
    /// Keep each ticket's recorded assessment for `--decisions`.
    pub keep_assessments: bool,
}

/// One replay's raw result, before scoring.
struct Replayed {
    assessments: std::collections::HashMap<String, crate::proto::Assessment>,
    escalated: HashSet<String>,
    decisions: Vec<DecisionRow>,
    malformed: u64,
    history_tickets: u64,
    history_dropped: u64,
    model_requests: u64,
    model_cost: BTreeMap<String, ModelCost>,
    alerts: u64,
    fit: String,
}

/// The model cost of several replays (each's per-role cost and alerts), per role, with its
/// ratios over all their alerts.
fn total_cost<'a>(
    replays: impl IntoIterator<Item = (&'a BTreeMap<String, ModelCost>, u64)>,
) -> BTreeMap<String, ModelCost> {
    let mut total: BTreeMap<String, ModelCost> = BTreeMap::new();
    let mut alerts = 0;
    for (model_cost, n) in replays {
        alerts += n;
        for (role, cost) in model_cost {
            total.entry(role.clone()).or_default().add(cost);
        }
    }
    total
        .into_iter()
        .map(|(role, cost)| (role, cost.with_ratios(alerts)))
        .collect()
}

/// A replay's scratch area: a temporary directory holding the replay's feed and its store,
/// created (its schema migrated) and open. Creating the store takes a new SQLite file through
/// every migration (4.7-6.7 ms in one transaction, release build on tmpfs; 5.8-9.5 ms through
/// sqlx's migrator), so `backtest` makes it on another task while it reads the tickets
/// ([`run_in`]). The replay is scored from
/// this store, which the replay's runtime also works on; the directory is removed when the
/// replay ends.
pub struct Scratch {
    dir: tempfile::TempDir,
    store: Store,
}

impl Scratch {
    /// A new scratch directory, under the system's temporary directory (`TMPDIR`), with the
    /// replay's store created in it.
    pub async fn new() -> Result<Scratch, BacktestError> {
        let dir = tempfile::tempdir().map_err(BacktestError::Scratch)?;
        let data = dir.path().join(DATA_DIR);
        std::fs::create_dir(&data).map_err(BacktestError::Scratch)?;
        // The file the runtime's store takes on the in-memory bus.
        let path = data.join(crate::store::MEMORY_FILE);
        let store = Store::open(&path).await?;
        Ok(Scratch { dir, store })
    }
}

/// The runtime's data directory in a [`Scratch`].
const DATA_DIR: &str = "data";

/// Replays `tickets` (in the given order) through the SOC and scores the result.
pub async fn run(
    tickets: Vec<Ticket>,
    selection: SelectionSummary,
    priors: &Setup,
) -> Result<Summary, BacktestError> {
    if tickets.is_empty() {
        return Err(BacktestError::Empty);
    }
    run_in(Scratch::new().await?, tickets, selection, priors).await
}

/// [`run`] in a scratch area made beforehand.
pub async fn run_in(
    scratch: Scratch,
    tickets: Vec<Ticket>,
    selection: SelectionSummary,
    priors: &Setup,
) -> Result<Summary, BacktestError> {
    if tickets.is_empty() {
        return Err(BacktestError::Empty);
    }
    let started = Instant::now();
    let replayed = replay(scratch, &tickets, priors).await?;
    let mut summary = priors_summary(priors, &priors.history, replayed.history_tickets, 1);
    summary.model_requests = replayed.model_requests;
    summary.model_cost = total_cost([(&replayed.model_cost, replayed.alerts)]);
    summary.history_dropped = replayed.history_dropped;
    summary.fits = vec![replayed.fit];
    let mut out = summarize(
        &tickets,
        &replayed.escalated,
        &replayed.decisions,
        replayed.malformed,
        started,
        selection,
        summary,
    );
    attach(&mut out, replayed.assessments);
    Ok(out)
}

/// Leave-one-site-out: replays each site's tickets with the dispositions of every *other*
/// site of the history (`priors.history`, or the tickets themselves when it is empty) as prior
/// knowledge, and scores all the replays together (`per_site` holds each site as replayed).
pub async fn leave_one_site_out(
    tickets: Vec<Ticket>,
    mut selection: SelectionSummary,
    priors: &Setup,
) -> Result<Summary, BacktestError> {
    if tickets.is_empty() {
        return Err(BacktestError::Empty);
    }
    let started = Instant::now();
    let pool = if priors.history.is_empty() {
        &tickets
    } else {
        &priors.history
    };
    let sites: std::collections::BTreeSet<&str> = tickets.iter().map(|t| t.site.as_str()).collect();
    let mut escalated = HashSet::new();
    let mut decisions = Vec::new();
    let mut assessments = std::collections::HashMap::new();
    let mut malformed = 0;
    let mut imported = 0;
    let mut model_requests = 0;
    let mut costs = Vec::new();
    let mut dropped = 0;
    let mut fits = Vec::new();
    for site in &sites {
        let fold: Vec<Ticket> = tickets
            .iter()
            .filter(|t| t.site == *site)
            .cloned()
            .collect();
        let fold_priors = Setup {
            history: pool.iter().filter(|t| t.site != *site).cloned().collect(),
            ..priors.clone()
        };
        let r = replay(Scratch::new().await?, &fold, &fold_priors).await?;
        costs.push((r.model_cost.clone(), r.alerts));
        escalated.extend(r.escalated);
        decisions.extend(r.decisions);
        assessments.extend(r.assessments);
        malformed += r.malformed;
        imported += r.history_tickets;
        model_requests += r.model_requests;
        dropped += r.history_dropped;
        fits.push(format!("{site}: {}", r.fit));
    }
    selection.leave_one_site_out = true;
    let mut summary = priors_summary(priors, pool, imported, sites.len() as u64);
    summary.model_requests = model_requests;
    summary.model_cost = total_cost(costs.iter().map(|(c, a)| (c, *a)));
    summary.history_dropped = dropped;
    summary.fits = fits;
    summary.history = Some(format!(
        "for each site, the other sites of {}",
        priors.history_source.as_deref().unwrap_or(&selection.file)
    ));
    let mut out = summarize(
        &tickets, &escalated, &decisions, malformed, started, selection, summary,
    );
    attach(&mut out, assessments);
    Ok(out)
}

fn priors_summary(
    priors: &Setup,
    history: &[Ticket],
    imported: u64,
    replays: u64,
) -> PriorsSummary {
    let sites: std::collections::BTreeSet<&str> = history.iter().map(|t| t.site.as_str()).collect();
    PriorsSummary {
        model_cost: BTreeMap::new(),
        history: priors.history_source.clone(),
        history_tickets: imported,
        replays,
        history_sites: sites.into_iter().map(str::to_owned).collect(),
        feedback_delay_s: priors.feedback_delay_ms.map(|ms| ms as f64 / 1000.0),
        model: if priors.dry_run {
            "canned (dry run)".into()
        } else if let Some(e) = priors.model.0.endpoints.first() {
            format!(
                "{} at {} ({:?} reasoning{})",
                e.model,
                crate::secret::redact_url(&e.url),
                priors.model.1.mode,
                if priors.model.1.precedent {
                    ", precedent on"
                } else {
                    ""
                }
            )
        } else {
            "none".into()
        },
        model_requests: 0,
        history_dropped: 0,
        fits: Vec::new(),
    }
}

fn attach(
    summary: &mut Summary,
    mut assessments: std::collections::HashMap<String, crate::proto::Assessment>,
) {
    for d in &mut summary.decisions {
        d.assessment = assessments.remove(&d.ticket);
    }
}

fn summarize(
    tickets: &[Ticket],
    escalated: &HashSet<String>,
    decisions: &[DecisionRow],
    malformed: u64,
    started: Instant,
    selection: SelectionSummary,
    priors: PriorsSummary,
) -> Summary {
    let (confusion, per_site, roles) = score(tickets, escalated, decisions);
    let overall = Scores::of(confusion);
    let calibration = calibration(tickets, decisions);
    let cold_start = cold_start(tickets, escalated);
    let mut p_of: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for d in decisions {
        if let Some(p) = d.p_escalate {
            p_of.entry(d.ticket.as_str()).or_insert(p);
        }
    }
    let outcomes = tickets
        .iter()
        .map(|t| TicketOutcome {
            ticket: t.id.clone(),
            site: t.site.clone(),
            rule: t.rule.clone(),
            host: t.host.clone(),
            p: p_of.get(t.id.as_str()).copied(),
            escalated: escalated.contains(&t.id),
            analysts: t.ground_truth,
            assessment: None,
        })
        .collect();
    Summary {
        tickets: overall.tickets,
        confusion,
        precision: overall.precision,
        recall: overall.recall,
        f1: overall.f1,
        per_site,
        roles,
        elapsed_s: round(started.elapsed().as_secs_f64()),
        selection,
        priors,
        malformed,
        calibration,
        cold_start,
        decisions: outcomes,
    }
}

/// Runs one replay: a real runtime over a scratch feed, with the history (and feedback) as
/// its knowledge; returns what its store recorded.
async fn replay(
    scratch: Scratch,
    tickets: &[Ticket],
    priors: &Setup,
) -> Result<Replayed, BacktestError> {
    let Scratch {
        dir: scratch,
        store,
    } = scratch;
    let feed = scratch.path().join("feed.jsonl");
    write_feed(&feed, tickets).map_err(BacktestError::Scratch)?;
    let mut config = Config {
        data_dir: scratch.path().join(DATA_DIR),
        alerts: Some(feed),
        ..Config::default()
    };
    config.bus.backend = Backend::Memory;
    // A replay keeps in memory only what is not worked and folded yet: each topic keeps what
    // a group has not read or acked, the audit what the projector has not folded (the store
    // holds the rest, and the calendar roles that read the audit are off). The dead letters
    // are kept: nothing consumes them, and they are counted from the stream.
    config.bus.settings.default_retention = crate::bus::Retention::MaxLen(0);
    config.bus.settings.retention = [
        (crate::bus::Topic::Audit, crate::bus::Retention::MaxLen(0)),
        (crate::bus::Topic::Dead, crate::bus::Retention::Keep),
    ]
    .into_iter()
    .map(|(topic, retention)| (topic.name().to_owned(), retention))
    .collect();
    // The feed waits for the store: the fold is a replay's slowest part, so publishing ahead
    // of it only fills memory. 4,000 entries are about 2,000 tickets' events: the roles work
    // on the next half while the store folds the last (at 2,000 they took turns, and a
    // 2,000-ticket dry run took a tenth longer; peak memory was the same within its noise).
    config.bus.settings.max_unfolded = 4_000;
    config.http.addr = "off".into();
    // Reports are not scored, and their windows are wall-clock time, not ticket time.
    config.calendar.enabled = false;
    // The run ends when the replay is idle: on the in-memory bus an idle check costs
    // microseconds, so it is made every millisecond (the default 100 ms would be most of a
    // short replay; at 5 ms a 10-ticket dry run waited about 4 ms for it, a tenth of the run).
    // The projector looks for new audit entries as often.
    config.supervisor.idle_poll_ms = 1;
    (config.llm, config.reasoning) = priors.model.clone();
    config.tools = priors.tools.clone();
    if priors.dry_run {
        // The canned model answers in this process: the gateway, its queue and accounting,
        // the request bodies and the answers' parsing run; no socket and no TLS setup.
        config.llm.endpoints = vec![crate::llm::EndpointConfig {
            name: "canned".into(),
            url: crate::llm::canned::IN_PROCESS_URL.into(),
            model: crate::llm::canned::MODEL.into(),
            ..crate::llm::EndpointConfig::default()
        }];
    }
    let (history, dropped) = history_for(tickets, &priors.history);
    let settings = crate::judgment::model::Settings {
        // The fit assumes the feedback this replay gives, and none without it.
        feedback_lag_ms: priors.feedback_delay_ms,
        ..priors.model.1.judgment()
    };
    let knowledge = Arc::new(Knowledge::new(priors.vendor.clone(), settings));
    knowledge.add_history(&history);
    // Every parameter of the score is chosen here, from this replay's history only.
    knowledge.fit();
    let fit = knowledge.model().params.policy.clone();
    // Feedback: the third reader of the labels, off by default. Each disposition is stamped
    // with the ticket time from which it is known, and the reasoner counts a disposition only
    // for cases that open after that time (strictly, and never a case's own), so adding them
    // all now leaks nothing. They are also published as `DispositionRecorded` events, as
    // analysts' closings would be, so the replay's audit holds them.
    let feedback: Vec<DispositionFacts> = match priors.feedback_delay_ms {
        Some(delay) if delay <= 0 => return Err(BacktestError::ZeroDelay),
        Some(delay) => tickets
            .iter()
            .map(|t| t.disposition(t.last_ms.saturating_add(delay)))
            .collect(),
        None => Vec::new(),
    };
    knowledge.add_dispositions(&feedback);
    let options = RuntimeOptions {
        until_idle: true,
        knowledge: Some(knowledge),
        no_site_connectors: true,
        // The runtime and its projector work on the scratch store's connections (a replay
        // opened three pools of the one file before: its own, the runtime's and the
        // projector's, each with its threads, PRAGMAs and migration check). The store is
        // open since before the runtime started and closed only after the scratch files are
        // removed, so no close of it is the last while the file exists: SQLite never copies
        // the write-ahead log into a database file it would delete next (that copy was a
        // third of the store's time in a 2,000-ticket dry run).
        store: Some(store.clone()),
        // The scratch store is scored and deleted: the cases' timelines (each event's JSON,
        // most of what its fold wrote) are written only for `--decisions`, which reads the
        // triage's assessment from them.
        timelines: if priors.keep_assessments {
            crate::store::Timelines::Kept
        } else {
            crate::store::Timelines::Skipped
        },
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::start(config, options).await?;
    if let Err(e) = publish_feedback(runtime.bus(), tickets, &feedback).await {
        // Stopped before its scratch directory goes.
        runtime.shutdown().await;
        store.close().await;
        return Err(e);
    }
    // A progress bar on stderr while the replay runs (hidden when stderr is not a terminal).
    let bar = indicatif::ProgressBar::new(tickets.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replaying [{bar:40}] {pos}/{len} tickets triaged (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let triage = runtime.role_stats("sentinel");
    let progress = async {
        loop {
            if let Some(stats) = &triage {
                bar.set_position(stats.processed.load(std::sync::atomic::Ordering::Relaxed));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let report = tokio::select! {
        report = runtime.wait() => report,
        () = progress => unreachable!("the progress loop never ends"),
    };
    bar.finish_and_clear();
    if report.exit != ExitReason::Idle {
        return Err(BacktestError::Replay(format!("{:?}", report.exit)));
    }
    if let Some(e) = &report.summary.feed_error {
        return Err(BacktestError::Replay(e.clone()));
    }
    // Scored from the run's own store: the projection of its audit, complete after the drain.
    if report.summary.store.projected.errors > 0 {
        return Err(BacktestError::Replay(
            "the verdict store missed part of the audit".into(),
        ));
    }
    let escalated = store.escalated_tickets().await?;
    let decisions = store.decisions().await?;
    let assessments = if priors.keep_assessments {
        store.triage_assessments().await?
    } else {
        Default::default()
    };
    if let Err(e) = scratch.close() {
        tracing::warn!(error = %e, "cannot remove the replay's scratch directory");
    }
    store.close().await;
    // Every alert the run took in has its triage in the store, or the store is incomplete (a
    // case re-assessed on an update has two).
    let triaged = decisions
        .iter()
        .filter(|d| d.kind == <crate::proto::AlertTriaged as crate::proto::EventKind>::KIND)
        .map(|d| d.ticket.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    if triaged != report.summary.alerts_in {
        return Err(BacktestError::Replay(format!(
            "the store holds {triaged} triage verdicts for {} alerts: it is incomplete",
            report.summary.alerts_in
        )));
    }
    Ok(Replayed {
        assessments,
        escalated,
        decisions,
        malformed: report.summary.malformed_lines,
        history_tickets: history.len() as u64,
        history_dropped: dropped,
        fit,
        model_requests: report.summary.llm.as_ref().map_or(0, |llm| {
            llm.endpoints.iter().map(|e| e.account.answered).sum()
        }),
        model_cost: report.summary.model_cost.clone(),
        alerts: report.summary.alerts_in,
    })
}

/// Publishes the feedback as the analysts' `DispositionRecorded` events (each stamped with
/// the ticket time it becomes known).
async fn publish_feedback(
    bus: &crate::bus::Bus,
    tickets: &[Ticket],
    feedback: &[DispositionFacts],
) -> Result<(), BacktestError> {
    let by_id: std::collections::HashMap<&str, &Ticket> =
        tickets.iter().map(|t| (t.id.as_str(), t)).collect();
    for chunk in feedback.chunks(256) {
        let mut commits = Vec::with_capacity(chunk.len());
        for f in chunk {
            let Some(t) = by_id.get(f.ticket.as_str()) else {
                continue;
            };
            let Ok(alert) = crate::ingest::jsonl::parse_line(t.feed_line().as_bytes()) else {
                continue;
            };
            let envelope = crate::proto::Envelope::new_root(
                "backtest",
                &f.ticket,
                crate::proto::Event::DispositionRecorded(crate::proto::DispositionRecorded {
                    case: crate::proto::CaseContext::from_alert(&alert, ""),
                    disposition: f.disposition,
                    by: "analysts (recorded labels)".into(),
                    origin: "backtest_feedback".into(),
                    known_at_ms: f.known_ms,
                    reason: None,
                }),
            );
            let outgoing = crate::bus::Outgoing::event(&envelope)
                .map_err(|e| BacktestError::Replay(e.to_string()))?;
            commits.push(crate::bus::Commit::dedupe(
                format!("disposition:{}", f.ticket),
                vec![outgoing],
            ));
        }
        bus.submit(commits)
            .await
            .map_err(|e| BacktestError::Replay(format!("publishing feedback: {e}")))?;
    }
    Ok(())
}
