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
    let view = soc_runtime::memory::case_view::load(store.pool(), &args.ticket).await?;
    store.close().await;
    let Some(view) = view else {
        anyhow::bail!("no case {} in the store", args.ticket);
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_why(&view));
    Ok(ExitCode::SUCCESS)
}

/// `case why` in text: the case, then every step in alert time with what it cited (a text
/// cited before is not repeated), the plan, proposals, intel, precedents and campaign.
fn render_why(v: &soc_runtime::memory::case_view::CaseView) -> String {
    use soc_runtime::proto::label;
    use std::fmt::Write;
    let c = &v.case;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "case {}: {} ({}, {}) on {}{}",
        v.ticket,
        c.rule_name,
        c.rule_id,
        c.source,
        c.host,
        c.site
            .as_deref()
            .map_or(String::new(), |s| format!(" at {s}"))
    );
    let _ = writeln!(
        out,
        "  alerts: {} from {} to {}; sources {}{}",
        c.alert_count,
        c.first_seen,
        c.last_seen,
        if c.src_ips.is_empty() {
            "-".to_owned()
        } else {
            c.src_ips.join(", ")
        },
        if c.dest_ips.is_empty() {
            String::new()
        } else {
            format!("; destinations {}", c.dest_ips.join(", "))
        }
    );
    for r in &v.needs_review {
        let _ = writeln!(out, "  NEEDS HUMAN REVIEW: {r}");
    }
    let _ = writeln!(
        out,
        "\ntrail ({} recorded steps, in alert time):",
        v.steps.len()
    );
    let mut seen: Vec<String> = Vec::new();
    for s in &v.steps {
        let confidence = s
            .confidence
            .map_or(String::new(), |c| format!(", confidence {c:.2}"));
        let reasoner = s.meta.as_ref().map_or(String::new(), |m| {
            let r = serde_json::to_value(m.reasoner)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let r = if m.degraded.is_some() {
                format!("{r}, degraded: the model was unavailable")
            } else {
                r
            };
            if m.tool_calls + m.tokens_in > 0 {
                format!(
                    " [{r}: {} tool calls, {}/{} tokens]",
                    m.tool_calls, m.tokens_in, m.tokens_out
                )
            } else {
                format!(" [{r}]")
            }
        });
        let at = chrono::DateTime::from_timestamp_millis(s.at_ms)
            .map(|t| t.format("%H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {:<17} {:<12} {}{confidence}{reasoner}  (processed {at})",
            s.alert_time, s.kind, s.role, s.headline
        );
        // A triage's assessment in full, instead of its one-line summaries.
        let details = match &s.assessment {
            Some(a) => {
                out.push_str(&render_assessment(a));
                &s.details[..s.details.len().min(1)]
            }
            None => &s.details[..],
        };
        for e in s.meta.iter().flat_map(|m| &m.record) {
            if e.kind == "tool" {
                let _ = writeln!(
                    out,
                    "      tool {}({}) {}: {} [{} bytes]",
                    e.tool,
                    cut(&e.arguments, 80),
                    e.outcome,
                    cut(&e.output.replace('\n', " "), 100),
                    e.output_bytes
                );
            } else {
                let _ = writeln!(
                    out,
                    "      model (sent {} new messages) answered: {}",
                    e.prompt.len(),
                    cut(&e.output.replace('\n', " "), 120)
                );
            }
        }
        for d in details {
            if d.is_empty() {
                continue;
            }
            if seen.contains(d) {
                let _ = writeln!(out, "      (cites again: {})", cut(d, 60));
                continue;
            }
            // A text quoting one printed before shows the quote as a reference.
            let mut shown = d.clone();
            for earlier in seen.iter().filter(|e| e.len() >= 40) {
                shown = shown.replace(earlier.as_str(), "[as cited above]");
            }
            let _ = writeln!(out, "      {shown}");
            seen.push(d.clone());
        }
    }
    if let Some(p) = &v.plan {
        let _ = writeln!(out, "\nIR plan ({}):", label(&p.severity));
        if p.containment.is_empty() {
            let _ = writeln!(out, "  no containment: the evidence supports none");
        }
        for s in &p.containment {
            let _ = writeln!(out, "  {} {}: {}", s.action, s.target, s.description);
            for e in &s.evidence {
                let _ = writeln!(out, "      because {e}");
            }
        }
    }
    for p in &v.proposals {
        let a = &p.proposed;
        let decision = p.decision.as_ref().map_or("pending".to_owned(), |d| {
            format!("{} by {}: {}", label(&d.decision), d.decided_by, d.reason)
        });
        let _ = writeln!(
            out,
            "  proposed {} on {} to {}: {decision}",
            a.step.action, a.step.target, a.approver_role
        );
    }
    if !v.techniques.is_empty() || v.actor.is_some() {
        let _ = writeln!(
            out,
            "\nthreat intel: actor {}; ATT&CK {}",
            v.actor.as_deref().unwrap_or("none named"),
            v.techniques
                .iter()
                .map(|t| format!("{} {}", t.id, t.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !v.iocs.is_empty() || !v.indicators.is_empty() {
        let mut all: Vec<String> = v
            .iocs
            .iter()
            .map(|i| format!("{}:{}", label(&i.kind), i.value))
            .collect();
        all.extend(v.indicators.iter().cloned());
        all.sort();
        all.dedup();
        let _ = writeln!(out, "indicators: {}", all.join(", "));
    }
    for p in &v.precedents {
        let _ = writeln!(
            out,
            "precedent: {} ({}, {} on {}) analysts {}: {}",
            p.ticket,
            p.site,
            p.rule_id,
            p.host,
            p.disposition.label(),
            p.similarity
        );
    }
    if let Some(c) = &v.campaign {
        let _ = writeln!(out, "campaign {}: {}", c.id, c.cases.join(", "));
    }
    for d in &v.dispositions {
        let _ = writeln!(
            out,
            "analysts: {} (by {}, from {}){}",
            d.disposition.label(),
            d.by,
            d.origin,
            d.reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"))
        );
    }
    terminal_safe(&out)
}

/// Text for a terminal: alert fields, model and tool output are untrusted, so control
/// characters (escape sequences), invisible and bidi formatting characters are shown escaped
/// (`\u{1b}`), never sent to the terminal.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            let invisible = matches!(c,
                '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}'
                | '\u{feff}');
            if (c.is_control() && c != '\n') || invisible {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn cut(text: &str, n: usize) -> String {
    let mut out: String = text.chars().take(n).collect();
    if text.chars().count() > n {
        out.push_str("...");
    }
    out
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
