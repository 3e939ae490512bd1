//! `case why`, `case recall` and `campaigns`: what case memory recorded and recalls.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{StoreArgs, open_store};

#[derive(Subcommand)]
pub(crate) enum CaseCommand {
    /// Every event, verdict and decision recorded for the ticket, in order.
    Why(CaseArgs),
    /// Earlier cases sharing strong indicators with the ticket, best first, with why.
    Recall(CaseArgs),
}

#[derive(Args)]
pub(crate) struct CaseArgs {
    /// The ticket id.
    ticket: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct CampaignArgs {
    /// Only cases opened in the last this many days (of the newest case's time).
    #[arg(long, default_value_t = 14)]
    days: i64,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `case` command.
pub(crate) async fn dispatch(command: CaseCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaseCommand::Why(args) => case_why(args).await,
        CaseCommand::Recall(args) => case_recall(args).await,
    }
}

async fn case_why(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.store).await?;
    let trace = soc_runtime::memory::why(store.pool(), &args.ticket).await?;
    store.close().await;
    if trace.is_empty() {
        anyhow::bail!("no case {} in the store", args.ticket);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("case {}: {} recorded events", args.ticket, trace.len());
    for step in &trace {
        let at = chrono::DateTime::from_timestamp_millis(step.at_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let body = &step.event["body"];
        let detail = [
            "verdict",
            "decision",
            "severity",
            "likely_actor",
            "rationale",
            "summary",
            "reason",
        ]
        .iter()
        .filter_map(|k| {
            body.get(*k)
                .filter(|v| !v.is_null())
                .map(|v| format!("{k}={v}"))
        })
        .collect::<Vec<_>>()
        .join("  ");
        println!("  {at}  {:<18} {:<13} {detail}", step.kind, step.role);
        if let Some(a) = body
            .get("assessment")
            .and_then(|a| serde_json::from_value::<soc_runtime::proto::Assessment>(a.clone()).ok())
        {
            print!("{}", render_assessment(&a));
        }
        if let Some(linked) = body.get("linked").and_then(|l| l.as_array())
            && !linked.is_empty()
        {
            let tickets: Vec<&str> = linked
                .iter()
                .filter_map(|l| l["case"]["ticket"].as_str())
                .collect();
            println!("      escalated with: {}", tickets.join(", "));
        }
        if step.kind
            == <soc_runtime::proto::DispositionRecorded as soc_runtime::proto::EventKind>::KIND
        {
            println!(
                "      analysts: {} (by {}, from {})",
                body["disposition"], body["by"], body["origin"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The recorded assessment of a decision, as `case why` shows it.
fn render_assessment(a: &soc_runtime::proto::Assessment) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "      p(escalate) {:.3}, threshold {:.2}: {}",
        a.probability, a.threshold, a.policy
    );
    let _ = writeln!(
        out,
        "      vendor: {} ({} tier) from {}{}",
        a.vendor.category,
        a.vendor.tier,
        a.vendor.source,
        if a.vendor.attack.is_empty() {
            String::new()
        } else {
            format!("; ATT&CK {}", a.vendor.attack.join(", "))
        }
    );
    for p in &a.priors {
        let _ = writeln!(
            out,
            "      prior {:<22} {:<34} escalated {:>8.2}  closed {:>8.2}  rate {:.3}",
            p.level, p.key, p.escalated, p.closed, p.rate
        );
    }
    for s in &a.signals {
        let _ = writeln!(
            out,
            "      signal {:<12} {:>8.3} -> {:+.3} log-odds ({})",
            s.name, s.value, s.contribution, s.detail
        );
    }
    for c in &a.correlated {
        let _ = writeln!(
            out,
            "      on the host in the hour: {} {} ({}) p {:.3}",
            c.ticket, c.rule_id, c.source, c.probability
        );
    }
    for p in &a.precedents {
        let _ = writeln!(
            out,
            "      precedent: {} ({}, {} on {}) analysts {:?}: {}",
            p.ticket, p.site, p.rule_id, p.host, p.disposition, p.similarity
        );
    }
    for l in &a.linked {
        let _ = writeln!(
            out,
            "      links into this incident: {} ({}) p {:.3}",
            l.case.ticket, l.case.rule_id, l.probability
        );
    }
    out
}

async fn case_recall(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.store).await?;
    let found = soc_runtime::memory::recall(store.pool(), &args.ticket, Default::default()).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} earlier cases recalled for {}", found.len(), args.ticket);
    for r in &found {
        let outcome = match (&r.ground_truth, r.escalated) {
            (Some(truth), _) => format!("analysts: {truth}"),
            (None, true) => "escalated".to_owned(),
            (None, false) => "not escalated".to_owned(),
        };
        println!(
            "  {:<20} score {:>7.3}  {outcome:<18} shares {}",
            r.ticket,
            r.score,
            r.shared.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn campaigns(args: CampaignArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::memory::CampaignOptions;
    let store = open_store(args.store).await?;
    let to_ms = store.newest_case_ms().await?.unwrap_or(0);
    let options = CampaignOptions {
        from_ms: to_ms.saturating_sub(args.days.max(0).saturating_mul(86_400_000)),
        to_ms,
        ..CampaignOptions::default()
    };
    let found = soc_runtime::memory::campaigns(store.pool(), options).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} campaigns in the {} days up to the newest case",
        found.len(),
        args.days
    );
    for c in &found {
        println!(
            "  {}  {} cases: {}",
            c.id,
            c.cases.len(),
            c.cases.join(", ")
        );
        println!("      shared: {}", c.shared.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
