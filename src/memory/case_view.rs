//! One case as an analyst reads it: what the case page (`/cases/<ticket>`) and `case why` (text
//! and JSON) both show, read from what was recorded (the case's audit events, its proposals and
//! decisions, its indicators, recall and campaigns), never re-derived.
//!
//! Times are alert times: each step is placed at the last alert its case had seen when the
//! step was taken (the processing time is kept beside it).
//!
//! In: the store (case events, proposals and decisions, indicators). Out: a [`CaseView`].
//! Read-only and stateless: a restart loses nothing, and a `memory rebuild` gives the same view
//! (what it reads is folded from the audit, or kept across rebuilds like decisions).

use serde::Serialize;
use sqlx::{Row, SqlitePool};

use super::{Campaign, CampaignOptions, RecallOptions, Recalled};
use crate::approvals::Proposal;
use crate::proto::{
    Assessment, AttackTechnique, CaseContext, DecisionMeta, DispositionRecorded, Event, Ioc,
    IrPlan, Precedent, label,
};
use crate::store::StoreError;

/// Campaigns are looked for in this window before the case.
const CAMPAIGN_WINDOW_MS: i64 = 14 * 24 * 3600 * 1000;

/// What the alerts of the case looked like at one point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertSeen {
    /// First alert, RFC 3339.
    pub first_seen: String,
    /// Last alert, RFC 3339.
    pub last_seen: String,
    /// Raw alerts in the case by then.
    pub count: u32,
    /// How it arrived.
    pub via: String,
    /// Whether the case grew (`CaseUpdated`) rather than opened.
    pub update: bool,
}

/// One step of the case's trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The audit entry.
    pub audit_id: String,
    /// Event kind.
    pub kind: String,
    /// Who produced it.
    pub role: String,
    /// The case's last alert when the step was taken (RFC 3339): the step's alert time.
    pub alert_time: String,
    /// When the step was processed, ms since the epoch.
    pub at_ms: i64,
    /// What it decided, in a line.
    pub headline: String,
    /// Its confidence, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Its reasoner and cost, where it is a role's decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<DecisionMeta>,
    /// What it cited: rationale, evidence, reasons.
    pub details: Vec<String>,
    /// The triage's full assessment (priors, signals, precedents), for a triage step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
}

/// A case as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    /// The ticket.
    pub ticket: String,
    /// The latest case context recorded.
    pub case: CaseContext,
    /// The alerts as they arrived.
    pub alerts: Vec<AlertSeen>,
    /// Every recorded step, in audit order.
    pub steps: Vec<Step>,
    /// Whether Tier 2 escalated it.
    pub escalated: bool,
    /// Why a role handed it to a human, if one did.
    pub needs_review: Vec<String>,
    /// The IR plan, if any.
    pub plan: Option<IrPlan>,
    /// Its proposed actions and their decisions.
    pub proposals: Vec<Proposal>,
    /// ATT&CK techniques attributed (Threat Intel), with the likely actor.
    pub techniques: Vec<AttackTechnique>,
    /// The likely actor, if Threat Intel named one.
    pub actor: Option<String>,
    /// Indicators Threat Intel reported.
    pub iocs: Vec<Ioc>,
    /// Indicators case memory extracted: `kind:value`.
    pub indicators: Vec<String>,
    /// Precedents the triage decision recalled (earlier cases with analysts' dispositions).
    pub precedents: Vec<Precedent>,
    /// Earlier cases sharing its indicators, as recall finds them now.
    pub recalled: Vec<Recalled>,
    /// The campaign it belongs to, if any.
    pub campaign: Option<Campaign>,
    /// What analysts decided.
    pub dispositions: Vec<DispositionRecorded>,
}

/// The case `ticket` as recorded, or `None` when the store has no event of it.
pub async fn load(pool: &SqlitePool, ticket: &str) -> Result<Option<CaseView>, StoreError> {
    let Some(mut view) = load_recorded(pool, ticket).await? else {
        return Ok(None);
    };
    view.recalled = super::recall(pool, ticket, RecallOptions::default()).await?;
    let first_ms: Option<i64> = sqlx::query("SELECT first_ms FROM cases WHERE ticket = ?")
        .bind(ticket)
        .fetch_optional(pool)
        .await?
        .map(|r| r.get(0));
    if let Some(first_ms) = first_ms {
        let options = CampaignOptions {
            from_ms: first_ms.saturating_sub(CAMPAIGN_WINDOW_MS),
            to_ms: first_ms.saturating_add(CAMPAIGN_WINDOW_MS),
            ..CampaignOptions::default()
        };
        view.campaign = super::campaigns(pool, options)
            .await?
            .into_iter()
            .find(|c| c.cases.iter().any(|t| t == ticket));
    }
    Ok(Some(view))
}

/// The case as recorded, without what case memory finds around it (recall and the campaign,
/// which read many cases): for a page that shows the case, not its neighbours.
pub async fn load_recorded(
    pool: &SqlitePool,
    ticket: &str,
) -> Result<Option<CaseView>, StoreError> {
    let trace = super::why(pool, ticket).await?;
    if trace.is_empty() {
        return Ok(None);
    }
    let mut view = CaseView {
        ticket: ticket.to_owned(),
        case: CaseContext::default(),
        alerts: Vec::new(),
        steps: Vec::new(),
        escalated: false,
        needs_review: Vec::new(),
        plan: None,
        proposals: Vec::new(),
        techniques: Vec::new(),
        actor: None,
        iocs: Vec::new(),
        indicators: Vec::new(),
        precedents: Vec::new(),
        recalled: Vec::new(),
        campaign: None,
        dispositions: Vec::new(),
    };
    for t in trace {
        let Ok(event) = serde_json::from_value::<Event>(t.event) else {
            continue;
        };
        let step = view.add(&event, t.at_ms);
        if let Some((headline, confidence, meta, details)) = step {
            let alert_time = match &event {
                Event::AlertReceived(r) => r.alert.last_seen.clone(),
                Event::CaseUpdated(u) => u.alert.last_seen.clone(),
                e => e.case().map(|c| c.last_seen.clone()).unwrap_or_default(),
            };
            view.steps.push(Step {
                audit_id: t.audit_id,
                kind: t.kind,
                role: t.role,
                alert_time,
                at_ms: t.at_ms,
                headline,
                confidence,
                meta,
                details,
                assessment: match &event {
                    Event::AlertTriaged(t) => t.assessment.clone(),
                    _ => None,
                },
            });
        }
    }
    view.proposals = crate::approvals::for_ticket(pool, ticket).await?;
    view.indicators = sqlx::query(
        "SELECT j.value ->> 0, j.value ->> 1 FROM cases c, json_each(c.indicators) j \
             WHERE c.ticket = ? ORDER BY 1, 2",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| format!("{}:{}", r.get::<String, _>(0), r.get::<String, _>(1)))
    .collect();
    Ok(Some(view))
}

/// A step's headline, confidence, decision metadata and details.
type StepParts = (String, Option<f32>, Option<DecisionMeta>, Vec<String>);

impl CaseView {
    /// Folds one recorded event in; the step it makes on the trail, if any.
    fn add(&mut self, event: &Event, at_ms: i64) -> Option<StepParts> {
        match event {
            // A case only received so far is the alert's; a triaged one is the roles'.
            Event::AlertReceived(r) if self.case.ticket.is_empty() => {
                self.case = CaseContext::from_alert(&r.alert, "");
            }
            Event::CaseUpdated(u) if self.case.ticket == u.alert.ticket_id => {
                self.case.alert_count = u.alert.alert_count;
                self.case.last_seen.clone_from(&u.alert.last_seen);
            }
            other => {
                if let Some(case) = other.case() {
                    self.case = case.clone();
                }
            }
        }
        let review = |meta: &DecisionMeta, out: &mut Vec<String>| {
            if let Some(why) = &meta.needs_human_review {
                out.push(why.clone());
            }
        };
        Some(match event {
            Event::AlertReceived(r) => {
                self.alerts.push(AlertSeen {
                    first_seen: r.alert.first_seen.clone(),
                    last_seen: r.alert.last_seen.clone(),
                    count: r.alert.alert_count,
                    via: r.received_via.clone(),
                    update: false,
                });
                (
                    format!(
                        "{} alerts received via {}",
                        r.alert.alert_count, r.received_via
                    ),
                    None,
                    None,
                    Vec::new(),
                )
            }
            Event::CaseUpdated(u) => {
                self.alerts.push(AlertSeen {
                    first_seen: u.alert.first_seen.clone(),
                    last_seen: u.alert.last_seen.clone(),
                    count: u.alert.alert_count,
                    via: u.received_via.clone(),
                    update: true,
                });
                (
                    format!("case grew to {} alerts", u.alert.alert_count),
                    None,
                    None,
                    Vec::new(),
                )
            }
            Event::AlertTriaged(t) => {
                review(&t.meta, &mut self.needs_review);
                if let Some(a) = &t.assessment {
                    self.precedents.clone_from(&a.precedents);
                }
                let mut details = vec![t.rationale.clone()];
                if let Some(a) = &t.assessment {
                    details.push(format!(
                        "p(escalate) {:.3} against the threshold {:.2} ({})",
                        a.probability, a.threshold, a.policy
                    ));
                    details.push(format!(
                        "vendor: {} ({} tier) from {}",
                        a.vendor.category, a.vendor.tier, a.vendor.source
                    ));
                }
                (
                    format!("triaged {} at priority {}", label(&t.verdict), t.priority),
                    Some(t.confidence),
                    Some(t.meta.clone()),
                    details,
                )
            }
            Event::Tier2Analysis(a) => {
                review(&a.meta, &mut self.needs_review);
                let mut details = vec![a.summary.clone()];
                details.extend(a.next_steps.iter().map(|s| format!("next: {s}")));
                if !a.similar_incidents.is_empty() {
                    details.push(format!("similar: {}", a.similar_incidents.join(", ")));
                }
                (
                    format!(
                        "investigated: {} ({})",
                        label(&a.decision),
                        label(&a.verdict)
                    ),
                    Some(a.confidence),
                    Some(a.meta.clone()),
                    details,
                )
            }
            Event::CaseEscalated(e) => {
                self.escalated = true;
                let mut details = vec![e.reason.clone()];
                if !e.linked.is_empty() {
                    details.push(format!(
                        "escalated with: {}",
                        e.linked
                            .iter()
                            .map(|l| l.case.ticket.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                (
                    "escalated to incident response".to_owned(),
                    Some(e.confidence),
                    None,
                    details,
                )
            }
            Event::IrPlan(p) => {
                review(&p.meta, &mut self.needs_review);
                self.plan = Some(p.clone());
                let mut details = vec![p.summary.clone()];
                details.extend(p.containment.iter().map(|s| {
                    format!(
                        "contain: {} {} ({})",
                        s.action,
                        s.target,
                        if s.evidence.is_empty() {
                            "no evidence recorded".to_owned()
                        } else {
                            s.evidence.join("; ")
                        }
                    )
                }));
                details.extend(p.eradication.iter().map(|s| format!("eradicate: {s}")));
                details.extend(p.recovery.iter().map(|s| format!("recover: {s}")));
                if !p.notifications.is_empty() {
                    details.push(format!("notify: {}", p.notifications.join(", ")));
                }
                (
                    format!(
                        "{} plan, {} containment steps",
                        label(&p.severity),
                        p.containment.len()
                    ),
                    None,
                    Some(p.meta.clone()),
                    details,
                )
            }
            // Its evidence is the plan's step's, shown with the plan.
            Event::ActionProposed(p) => (
                format!(
                    "proposed {} on {} to {}",
                    p.step.action, p.step.target, p.approver_role
                ),
                None,
                None,
                Vec::new(),
            ),
            Event::ActionDecision(d) => (
                format!("{} {} by {}", label(&d.decision), d.action_id, d.decided_by),
                None,
                None,
                vec![d.reason.clone()],
            ),
            Event::ThreatIntelReport(r) => {
                review(&r.meta, &mut self.needs_review);
                self.techniques.clone_from(&r.attack_techniques);
                self.actor.clone_from(&r.likely_actor);
                self.iocs.clone_from(&r.iocs);
                let mut details = r.evidence.clone();
                if !r.attack_techniques.is_empty() {
                    details.push(format!(
                        "ATT&CK: {}",
                        r.attack_techniques
                            .iter()
                            .map(|t| format!("{} {}", t.id, t.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                (
                    format!(
                        "attributed to {}",
                        r.likely_actor.as_deref().unwrap_or("no known actor")
                    ),
                    None,
                    Some(r.meta.clone()),
                    details,
                )
            }
            Event::DispositionRecorded(d) => {
                self.dispositions.push(d.clone());
                (
                    format!(
                        "analysts: {} (by {}, from {})",
                        d.disposition.label(),
                        d.by,
                        d.origin
                    ),
                    None,
                    None,
                    d.reason.iter().cloned().collect(),
                )
            }
            _ => {
                let _ = at_ms;
                return None;
            }
        })
    }
}

/// How many other cases touch the target of `action` in `case`'s site (as their host, or as an
/// indicator: an address, a host name): an action's blast radius. `None` where case memory
/// does not index the target (an account, a reserved or documentation address).
pub async fn blast_radius(
    pool: &SqlitePool,
    action: &str,
    target: &str,
    case: &CaseContext,
) -> Result<Option<i64>, StoreError> {
    if action == "disable_account" {
        return Ok(None);
    }
    let site = case.site.as_deref().unwrap_or_default();
    let Some((kind, value)) = crate::indicators::of_target(target, site) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT COUNT(*) FROM (SELECT ticket FROM cases WHERE host = ?1 AND site IS ?2 \
         AND ticket <> ?3 UNION SELECT ticket FROM indicators WHERE kind = ?4 AND value = ?5 \
         AND ticket <> ?3)",
    )
    .bind(target.trim())
    .bind(case.site.as_deref())
    .bind(&case.ticket)
    .bind(kind.as_str())
    .bind(value)
    .fetch_one(pool)
    .await?;
    Ok(Some(row.get(0)))
}
