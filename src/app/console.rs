//! The analyst's console: the case page, the queues, and dispositions given from the console.
//!
//! - `GET /cases/{ticket}`: the case as recorded ([`crate::memory::case_view`], the model
//!   `case why` prints): its alerts over time, each role's decision with its confidence,
//!   reasoner, cost and cited evidence, the IR plan, proposals and decisions, threat intel
//!   with ATT&CK techniques linked to their descriptions, precedents and recalled cases, its
//!   campaign, its indicators and the audit trail in alert time. Every field that came from an
//!   alert is escaped and defanged ([`crate::text::show`]).
//! - `POST /cases/{ticket}/disposition` (`classification`, `reason`, `csrf`): a signed-in
//!   analyst's disposition, "confirmed malicious" (escalate), "benign true positive" or "false
//!   positive" (close), with a reason. CSRF-protected like the approval form, recorded once per
//!   case and analyst (a second is 409 showing the first), and written in one transaction with
//!   the ticket's disposition (what the reasoner learns from) and its `DispositionRecorded` in
//!   the outbox (published on the bus, kept in the audit).
//! - `GET /queues`: needs-review cases (a role handed them to a human), escalated cases, and
//!   pending approvals, each without an analyst's disposition yet; filters `site`, `severity`
//!   (`SEV-1`..`SEV-4`) and `age_h` (opened within that many hours of the newest case).
//!
//! Sign-in as for the dashboard: required once anyone can sign in; a disposition always needs
//! a signed-in person.
//!
//! State: none of its own. Dispositions are in the store (committed before the response, with
//! their outbox row), so a restart loses nothing but sign-ins without a `session_key`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sqlx::{Row, SqlitePool};

use crate::approvals::Approver;
use crate::approvals::web::{Peer, Purpose, Web, error_response, page, when};
use crate::knowledge::{DispositionFacts, Knowledge};
use crate::memory::case_view::{self, CaseView};
use crate::proto::{Disposition, label};
use crate::store::StoreError;
use crate::text::{encode, esc, show};
use crate::tools::Toolbox;

/// Longest disposition reason, characters.
const MAX_REASON: usize = 2000;
/// Most rows per queue.
const QUEUE_ROWS: i64 = 200;

/// What the console reads and writes.
pub(crate) struct Console {
    web: Arc<Web>,
    pool: SqlitePool,
    tools: Option<Arc<Toolbox>>,
    knowledge: Option<Arc<Knowledge>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// The console over the store at `pool`, with the ATT&CK bundle of `tools` and the
    /// knowledge dispositions teach.
    pub(crate) fn new(
        web: Arc<Web>,
        pool: SqlitePool,
        tools: Option<Arc<Toolbox>>,
        knowledge: Option<Arc<Knowledge>>,
    ) -> Self {
        Self {
            web,
            pool,
            tools,
            knowledge,
        }
    }
}

/// The console's routes.
pub(crate) fn routes(console: Arc<Console>) -> axum::Router {
    axum::Router::new()
        .route("/cases/{ticket}", get(case_page))
        .route("/cases/{ticket}/disposition", post(dispose))
        .route("/queues", get(queues_page))
        .with_state(console)
}

/// An analyst's classification of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Classification {
    /// An attack: escalate.
    ConfirmedMalicious,
    /// Real activity, expected and harmless: close.
    BenignTruePositive,
    /// The detection was wrong: close.
    FalsePositive,
}

impl Classification {
    const ALL: [Classification; 3] = [
        Self::ConfirmedMalicious,
        Self::BenignTruePositive,
        Self::FalsePositive,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::ConfirmedMalicious => "confirmed_malicious",
            Self::BenignTruePositive => "benign_true_positive",
            Self::FalsePositive => "false_positive",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::ConfirmedMalicious => "Confirmed malicious",
            Self::BenignTruePositive => "Benign true positive",
            Self::FalsePositive => "False positive",
        }
    }

    fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == key)
    }

    /// What the reasoner learns: escalate an attack, close the rest.
    fn disposition(self) -> Disposition {
        match self {
            Self::ConfirmedMalicious => Disposition::Escalate,
            Self::BenignTruePositive | Self::FalsePositive => Disposition::Close,
        }
    }
}

/// The signed-in person (or `None` on an open console), or the response that sends them to
/// sign in.
fn viewer(
    c: &Console,
    headers: &HeaderMap,
    peer: Peer,
    path: &str,
) -> Result<Option<(Approver, String)>, Redirect> {
    let session = c.web.session(headers, peer);
    if session.is_none() && c.web.sign_in_required() {
        return Err(Redirect::to(&format!("/login?next={}", encode(path))));
    }
    Ok(session)
}

async fn case_page(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    Path(ticket): Path<String>,
) -> Response {
    let session = match viewer(&c, &headers, peer, &format!("/cases/{}", encode(&ticket))) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let me = session.as_ref().map(|(a, _)| a);
    match case_view::load(&c.pool, &ticket).await {
        Ok(Some(view)) => {
            let csrf = session
                .as_ref()
                .map(|(a, s)| c.web.csrf(Purpose::Disposition, &a.name, s, &ticket));
            let given = given_dispositions(&c.pool, &ticket)
                .await
                .unwrap_or_default();
            Html(case_html(&c, &view, me, csrf.as_deref(), &given, None)).into_response()
        }
        Ok(None) => error_response(
            &c.web,
            StatusCode::NOT_FOUND,
            &format!("No case {ticket} in the store."),
            me,
        ),
        Err(e) => error_response(
            &c.web,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            me,
        ),
    }
}

#[derive(Deserialize)]
struct DispositionForm {
    #[serde(default)]
    classification: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

async fn dispose(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    Form(form): Form<DispositionForm>,
) -> Response {
    let Some((me, session)) = c.web.session(&headers, peer) else {
        let why = if c.web.sign_in_required() {
            "Sign in to record a disposition."
        } else {
            "Nobody can sign in (no approvers are configured), so no disposition can be recorded \
             from the console: see /login."
        };
        return error_response(&c.web, StatusCode::UNAUTHORIZED, why, None);
    };
    if !c.web.csrf_ok(
        Purpose::Disposition,
        &me.name,
        &session,
        &ticket,
        &form.csrf,
    ) {
        return error_response(
            &c.web,
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or invalid: open the case page again.",
            Some(&me),
        );
    }
    let Some(class) = Classification::parse(&form.classification) else {
        return error_response(
            &c.web,
            StatusCode::BAD_REQUEST,
            "Choose a classification: confirmed malicious, benign true positive or false positive.",
            Some(&me),
        );
    };
    let reason = form.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return error_response(
            &c.web,
            StatusCode::BAD_REQUEST,
            &format!("Give the reason for the disposition (1 to {MAX_REASON} characters)."),
            Some(&me),
        );
    }
    let view = match case_view::load_recorded(&c.pool, &ticket).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return error_response(
                &c.web,
                StatusCode::NOT_FOUND,
                &format!("No case {ticket} in the store."),
                Some(&me),
            );
        }
        Err(e) => {
            return error_response(
                &c.web,
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
                Some(&me),
            );
        }
    };
    if view.case.ticket != view.ticket {
        return error_response(
            &c.web,
            StatusCode::CONFLICT,
            &format!("Case {ticket} has no recorded context yet: try again in a moment."),
            Some(&me),
        );
    }
    let now = crate::proto::now_ms();
    match record(&c.pool, &view, class, reason, &me.name, now).await {
        Ok(Some(facts)) => {
            tracing::info!(ticket = %ticket, classification = class.key(), person = %me.name,
                "disposition recorded from the console");
            if let Some(k) = &c.knowledge {
                k.add_dispositions(std::iter::once(&facts));
            }
            Redirect::to(&format!("/cases/{}#disposition", encode(&ticket))).into_response()
        }
        Ok(None) => {
            let given = given_dispositions(&c.pool, &ticket)
                .await
                .unwrap_or_default();
            let csrf = c
                .web
                .csrf(Purpose::Disposition, &me.name, &session, &ticket);
            let html = case_html(
                &c,
                &view,
                Some(&me),
                Some(&csrf),
                &given,
                Some("You recorded a disposition of this case before: the first one stands."),
            );
            (StatusCode::CONFLICT, Html(html)).into_response()
        }
        Err(e) => error_response(
            &c.web,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            Some(&me),
        ),
    }
}

/// Records `person`'s disposition of the case once, with the ticket's disposition (what the
/// reasoner learns from) and its `DispositionRecorded` in the outbox, in one transaction.
/// `None` when this person recorded one before.
async fn record(
    pool: &SqlitePool,
    view: &CaseView,
    class: Classification,
    reason: &str,
    person: &str,
    now_ms: i64,
) -> Result<Option<DispositionFacts>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO console_dispositions (ticket, classification, reason, person, \
         at_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&view.ticket)
    .bind(class.key())
    .bind(reason)
    .bind(person)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let facts = crate::store::record_disposition(
        &mut tx,
        &view.case,
        class.disposition(),
        person,
        "console",
        Some(format!("{}: {reason}", class.key())),
        // The first disposition of a ticket stands, as in the live knowledge.
        false,
        &format!(
            "disposition:console:{}:{}",
            encode(&view.ticket),
            encode(person)
        ),
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(facts))
}

/// A disposition given from the console.
#[derive(Debug, Clone, Default)]
struct Given {
    classification: String,
    reason: String,
    person: String,
    at_ms: i64,
}

async fn given_dispositions(pool: &SqlitePool, ticket: &str) -> Result<Vec<Given>, StoreError> {
    Ok(sqlx::query(
        "SELECT classification, reason, person, at_ms FROM console_dispositions WHERE ticket = ? \
         ORDER BY at_ms",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Given {
        classification: r.get(0),
        reason: r.get(1),
        person: r.get(2),
        at_ms: r.get(3),
    })
    .collect())
}

/// What a role saw and did while deciding: each model exchange and tool invocation, folded.
fn record_html(record: &[crate::proto::Exchange]) -> String {
    let mut html = format!(
        "<details class=\"record\"><summary>What it saw and did ({} exchanges)</summary><ol>",
        record.len()
    );
    for e in record {
        let what = if e.kind == "tool" {
            format!(
                "tool <b>{}</b>({}) {}",
                show(&e.tool),
                show(&e.arguments),
                show(&e.outcome)
            )
        } else {
            let mut sent = String::new();
            for p in &e.prompt {
                let _ = write!(sent, "<pre class=\"untrusted\">{}</pre>", show(p));
            }
            format!(
                "model{}",
                if sent.is_empty() {
                    String::new()
                } else {
                    format!(", sent:{sent}")
                }
            )
        };
        let _ = write!(
            html,
            "<li>{} at {}: {what}<pre class=\"untrusted\">{}</pre><span class=\"muted\">{} \
             bytes, sha256 {}</span></li>",
            esc(&e.kind),
            when(e.at_ms),
            show(&e.output),
            e.output_bytes,
            esc(&e.output_sha256)
        );
    }
    html.push_str("</ol></details>");
    html
}

/// An ATT&CK technique id as the site's path writes it (`T1110.001` -> `T1110/001`), if it is
/// one.
fn attack_path(id: &str) -> Option<String> {
    let id = id.trim().to_ascii_uppercase();
    let (base, sub) = id
        .split_once('.')
        .map_or((id.as_str(), None), |(b, s)| (b, Some(s)));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let ok =
        base.strip_prefix('T').is_some_and(|d| digits(d, 4)) && sub.is_none_or(|s| digits(s, 3));
    ok.then(|| match sub {
        Some(s) => format!("{base}/{s}"),
        None => base.to_owned(),
    })
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn section(body: &mut String, id: &str, title: &str, content: &str) {
    let _ = write!(
        body,
        "<section id=\"{id}\"><h2>{title}</h2>{content}</section>"
    );
}

fn case_link(ticket: &str) -> String {
    format!("<a href=\"/cases/{}\">{}</a>", encode(ticket), show(ticket))
}

fn case_html(
    c: &Console,
    v: &CaseView,
    me: Option<&Approver>,
    csrf: Option<&str>,
    given: &[Given],
    error: Option<&str>,
) -> String {
    let case = &v.case;
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(e));
    }
    // The header: what it is, where, and where it stands.
    let mut badges = Vec::new();
    if v.escalated {
        badges.push("<span class=\"badge hot\" id=\"escalated\">escalated</span>".to_owned());
    }
    if !v.needs_review.is_empty() {
        badges.push(
            "<span class=\"badge warn\" id=\"needs-review\">needs human review</span>".to_owned(),
        );
    }
    if let Some(plan) = &v.plan {
        badges.push(format!(
            "<span class=\"badge\">{}</span>",
            label(&plan.severity)
        ));
    }
    if let Some(d) = v.dispositions.last() {
        badges.push(format!(
            "<span class=\"badge\">analysts: {}</span>",
            d.disposition.label()
        ));
    }
    let _ = write!(
        body,
        "<p>{}</p><table id=\"summary\"><tr><th>Rule</th><td class=\"untrusted\">{} ({}, {})</td></tr>\
         <tr><th>Host</th><td class=\"untrusted\">{}</td></tr>\
         <tr><th>Site</th><td class=\"untrusted\">{}</td></tr>\
         <tr><th>User</th><td class=\"untrusted\">{}</td></tr>\
         <tr><th>Sources</th><td class=\"untrusted\">{}</td></tr>\
         <tr><th>Destinations</th><td class=\"untrusted\">{}</td></tr>\
         <tr><th>Alerts</th><td>{} from {} to {}</td></tr></table>",
        badges.join(" "),
        show(&case.rule_name),
        show(&case.rule_id),
        show(&case.source),
        show(&case.host),
        show(case.site.as_deref().unwrap_or("-")),
        show(case.user.as_deref().unwrap_or("-")),
        show(&or_dash(&case.src_ips.join(", "))),
        show(&or_dash(&case.dest_ips.join(", "))),
        case.alert_count,
        show(&case.first_seen),
        show(&case.last_seen),
    );
    if !v.needs_review.is_empty() {
        let mut html = String::from("<ul>");
        for r in &v.needs_review {
            let _ = write!(html, "<li>{}</li>", show(r));
        }
        html.push_str("</ul>");
        section(&mut body, "review", "Why a human must look", &html);
    }
    // Alerts and their counts over time.
    let max = v.alerts.iter().map(|a| a.count).max().unwrap_or(1).max(1);
    let mut html = String::from(
        "<table><tr><th>First</th><th>Last</th><th>Alerts</th><th></th><th>Via</th></tr>",
    );
    for a in &v.alerts {
        let width = (u64::from(a.count) * 200 / u64::from(max)).max(1);
        let _ = write!(
            html,
            "<tr class=\"alerts\"><td>{}</td><td>{}</td><td>{}</td><td><svg width=\"200\" \
             height=\"10\" role=\"img\" aria-label=\"{} alerts\"><rect width=\"{width}\" \
             height=\"10\" fill=\"#0969da\"/></svg></td><td>{}{}</td></tr>",
            show(&a.first_seen),
            show(&a.last_seen),
            a.count,
            a.count,
            show(&a.via),
            if a.update { " (update)" } else { "" }
        );
    }
    html.push_str("</table>");
    section(&mut body, "alerts", "Alerts over time", &html);
    // Each role's decision.
    let mut html = String::from(
        "<table><tr><th>Alert time</th><th>Role</th><th>Decision</th><th>Confidence</th>\
         <th>Reasoner</th><th>Evidence cited</th></tr>",
    );
    for s in v
        .steps
        .iter()
        .filter(|s| s.meta.is_some() || s.confidence.is_some())
    {
        let reasoner = s.meta.as_ref().map_or("-".to_owned(), |m| {
            format!(
                "{}{}{}",
                label(&m.reasoner),
                if m.degraded.is_some() {
                    " (degraded: the model was unavailable)"
                } else {
                    ""
                },
                if m.tool_calls + m.tokens_in > 0 {
                    format!(
                        " ({} tool calls, {}/{} tokens)",
                        m.tool_calls, m.tokens_in, m.tokens_out
                    )
                } else {
                    String::new()
                }
            )
        });
        let mut cited = String::from("<ul>");
        for d in &s.details {
            let _ = write!(cited, "<li class=\"untrusted\">{}</li>", show(d));
        }
        cited.push_str("</ul>");
        if let Some(m) = s.meta.as_ref().filter(|m| !m.record.is_empty()) {
            cited.push_str(&record_html(&m.record));
        }
        let _ = write!(
            html,
            "<tr class=\"decision\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            show(&s.alert_time),
            esc(&s.role),
            show(&s.headline),
            s.confidence.map_or("-".to_owned(), |c| format!("{c:.2}")),
            esc(&reasoner),
            cited
        );
    }
    html.push_str("</table>");
    section(&mut body, "decisions", "Decisions", &html);
    // The IR plan.
    if let Some(p) = &v.plan {
        let mut html = format!(
            "<p><b>{}</b>: <span class=\"untrusted\">{}</span></p><table><tr><th>Step</th>\
             <th>Action</th><th>Target</th><th>Evidence</th></tr>",
            label(&p.severity),
            show(&p.summary)
        );
        for s in &p.containment {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"untrusted\">{}</td><td>{}</td></tr>",
                esc(&s.step_id),
                show(&s.action),
                show(&s.target),
                show(&s.evidence.join("; "))
            );
        }
        if p.containment.is_empty() {
            html.push_str(
                "<tr><td colspan=\"4\">No containment: the evidence supports none.</td></tr>",
            );
        }
        html.push_str("</table><ul>");
        for s in &p.eradication {
            let _ = write!(html, "<li>eradicate: {}</li>", show(s));
        }
        for s in &p.recovery {
            let _ = write!(html, "<li>recover: {}</li>", show(s));
        }
        let _ = write!(
            html,
            "<li>notify: {}</li></ul>",
            show(&p.notifications.join(", "))
        );
        section(&mut body, "plan", "IR plan", &html);
    }
    // Proposals and decisions.
    if !v.proposals.is_empty() {
        let mut html = String::from("<table><tr><th>Action</th><th>For</th><th>Decision</th></tr>");
        for p in &v.proposals {
            let a = &p.proposed;
            let decision = p.decision.as_ref().map_or("pending".to_owned(), |d| {
                format!(
                    "{} by {} at {}: {}",
                    label(&d.decision),
                    show(&d.decided_by),
                    when(d.decided_at_ms),
                    show(&d.reason)
                )
            });
            let _ = write!(
                html,
                "<tr class=\"proposal\"><td><a href=\"/approvals/{}\">{} on {}</a></td><td>{}</td>\
                 <td>{decision}</td></tr>",
                encode(&a.action_id),
                show(&a.step.action),
                show(&a.step.target),
                esc(&a.approver_role)
            );
        }
        html.push_str("</table>");
        section(&mut body, "proposals", "Proposed actions", &html);
    }
    // Threat intel.
    if !v.techniques.is_empty() || v.actor.is_some() || !v.iocs.is_empty() {
        let attack = c.tools.as_ref().and_then(|t| t.attack());
        let mut html = format!(
            "<p>Likely actor: {}</p><ul>",
            show(v.actor.as_deref().unwrap_or("none named"))
        );
        for t in &v.techniques {
            let described = attack
                .and_then(|a| a.technique(&t.id))
                .map_or(String::new(), |d| {
                    format!(
                        "<br><span class=\"muted\">{} ({})</span>",
                        show(&d.description),
                        show(&d.tactics.join(", "))
                    )
                });
            let link = attack_path(&t.id).map_or_else(
                || show(&t.id),
                |path| {
                    format!(
                        "<a class=\"technique\" rel=\"noreferrer\" \
                         href=\"https://attack.mitre.org/techniques/{path}/\">{}</a>",
                        show(&t.id)
                    )
                },
            );
            let _ = write!(html, "<li>{link} {}{described}</li>", show(&t.name));
        }
        html.push_str("</ul>");
        if !v.iocs.is_empty() {
            html.push_str("<p>Indicators reported:</p><ul>");
            for i in &v.iocs {
                let _ = write!(
                    html,
                    "<li class=\"untrusted\">{}: {}</li>",
                    label(&i.kind),
                    show(&i.value)
                );
            }
            html.push_str("</ul>");
        }
        section(&mut body, "intel", "Threat intel", &html);
    }
    // Precedents, recall, campaign.
    let mut html = String::new();
    if !v.precedents.is_empty() {
        html.push_str("<p>Precedents the triage recalled:</p><ul>");
        for p in &v.precedents {
            let _ = write!(
                html,
                "<li>{} ({}, {} on {}): analysts {}; {}</li>",
                case_link(&p.ticket),
                show(&p.site),
                show(&p.rule_id),
                show(&p.host),
                p.disposition.label(),
                show(&p.similarity)
            );
        }
        html.push_str("</ul>");
    }
    if !v.recalled.is_empty() {
        html.push_str("<p>Earlier cases sharing its indicators:</p><ul>");
        for r in &v.recalled {
            let _ = write!(
                html,
                "<li>{} score {:.2}, {}: shares {}</li>",
                case_link(&r.ticket),
                r.score,
                match (&r.ground_truth, r.escalated) {
                    (Some(t), _) => format!("analysts: {}", show(t)),
                    (None, true) => "escalated".to_owned(),
                    (None, false) => "not escalated".to_owned(),
                },
                show(&r.shared.join(", "))
            );
        }
        html.push_str("</ul>");
    }
    match &v.campaign {
        Some(camp) => {
            let _ = write!(
                html,
                "<p id=\"campaign\">Campaign {} ({} cases): {}; shared {}</p>",
                show(&camp.id),
                camp.cases.len(),
                camp.cases
                    .iter()
                    .map(|t| case_link(t))
                    .collect::<Vec<_>>()
                    .join(", "),
                show(&camp.shared.join(", "))
            );
        }
        None => html.push_str("<p>Not part of a campaign.</p>"),
    }
    if !v.indicators.is_empty() {
        let _ = write!(
            html,
            "<p>Indicators: <span class=\"untrusted\">{}</span></p>",
            show(&v.indicators.join(", "))
        );
    }
    section(
        &mut body,
        "memory",
        "Precedents, related cases and campaign",
        &html,
    );
    // Dispositions, and the form.
    let mut html = String::new();
    for g in given {
        let _ = write!(
            html,
            "<p class=\"given\">{} by {} at {}: {}</p>",
            Classification::parse(&g.classification).map_or("?", Classification::text),
            show(&g.person),
            when(g.at_ms),
            show(&g.reason)
        );
    }
    for d in v.dispositions.iter().filter(|d| d.origin != "console") {
        let _ = write!(
            html,
            "<p>{} by {} (from {})</p>",
            d.disposition.label(),
            show(&d.by),
            show(&d.origin)
        );
    }
    match (me, csrf) {
        (Some(me), Some(csrf)) if !given.iter().any(|g| g.person == me.name) => {
            let mut radios = String::new();
            for (i, class) in Classification::ALL.into_iter().enumerate() {
                let _ = write!(
                    radios,
                    "<label><input type=\"radio\" name=\"classification\" value=\"{}\"{}> {}</label> ",
                    class.key(),
                    if i == 0 { " required" } else { "" },
                    class.text()
                );
            }
            let _ = write!(
                html,
                "<form method=\"post\" action=\"/cases/{}/disposition\" id=\"disposition-form\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><fieldset>\
                 <legend>Your disposition</legend><p>{radios}</p><p><label>Reason<br>\
                 <textarea name=\"reason\" rows=\"3\" cols=\"60\" required></textarea></label></p>\
                 <p><button type=\"submit\" id=\"record-disposition\">Record as {}</button></p>\
                 </fieldset></form>",
                encode(&v.ticket),
                esc(&me.name)
            );
        }
        (Some(_), _) => {}
        _ => html.push_str("<p>Sign in to record a disposition.</p>"),
    }
    section(&mut body, "disposition", "Disposition", &html);
    // The audit trail, in alert time.
    let mut html = String::from(
        "<table><tr><th>Alert time</th><th>Processed</th><th>Event</th><th>Role</th>\
         <th>What</th><th>Audit entry</th></tr>",
    );
    for s in &v.steps {
        let _ = write!(
            html,
            "<tr class=\"trail\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            show(&s.alert_time),
            when(s.at_ms),
            esc(&s.kind),
            esc(&s.role),
            show(&s.headline),
            esc(&s.audit_id)
        );
    }
    html.push_str("</table>");
    section(&mut body, "trail", "Audit trail", &html);
    page(&c.web, &format!("Case {}", v.ticket), &body, me)
}

#[derive(Deserialize, Default)]
struct QueueQuery {
    site: Option<String>,
    severity: Option<String>,
    age_h: Option<String>,
}

/// One row of a case queue.
struct Queued {
    ticket: String,
    site: String,
    host: String,
    rule: String,
    first_ms: i64,
    severity: Option<String>,
}

/// How many cases wait in each queue: needs review, escalated, pending approvals.
pub(crate) async fn queue_counts(pool: &SqlitePool) -> Result<(i64, i64, i64), StoreError> {
    let review: i64 = sqlx::query(
        "SELECT COUNT(*) FROM cases WHERE needs_review = 1 \
         AND ticket NOT IN (SELECT ticket FROM dispositions)",
    )
    .fetch_one(pool)
    .await?
    .get(0);
    let escalated: i64 = sqlx::query(
        "SELECT COUNT(*) FROM cases WHERE escalated = 1 \
         AND ticket NOT IN (SELECT ticket FROM dispositions)",
    )
    .fetch_one(pool)
    .await?
    .get(0);
    let pending: i64 = sqlx::query(
        "SELECT COUNT(*) FROM proposals p LEFT JOIN decisions d ON d.action_id = p.action_id \
         WHERE d.action_id IS NULL AND p.expires_at_ms > ?",
    )
    .bind(crate::proto::now_ms())
    .fetch_one(pool)
    .await?
    .get(0);
    Ok((review, escalated, pending))
}

#[derive(Clone, Copy)]
enum Queue {
    Review,
    Escalated,
}

/// Cases open at or after this, for `age_h`: hours before the newest case (the clock of a
/// live SOC, the replay's own time on replayed data).
async fn since(pool: &SqlitePool, q: &QueueQuery) -> Result<i64, StoreError> {
    let Some(hours) = q
        .age_h
        .as_deref()
        .and_then(|h| h.trim().parse::<i64>().ok())
        .filter(|h| *h > 0)
    else {
        return Ok(i64::MIN);
    };
    let newest: Option<i64> = sqlx::query("SELECT MAX(first_ms) FROM cases")
        .fetch_one(pool)
        .await?
        .get(0);
    Ok(newest
        .unwrap_or(0)
        .saturating_sub(hours.saturating_mul(3_600_000)))
}

async fn queue(
    pool: &SqlitePool,
    which: Queue,
    q: &QueueQuery,
    limit: i64,
) -> Result<Vec<Queued>, StoreError> {
    let since = since(pool, q).await?;
    let which_cases = match which {
        Queue::Review => "c.needs_review = 1",
        Queue::Escalated => "c.escalated = 1",
    };
    // Filters in the query, before its limit.
    let rows = sqlx::query(&format!(
        "SELECT ticket, site, host, rule, first_ms, severity FROM (\
         SELECT c.ticket, COALESCE(c.site, '') AS site, c.host, c.rule, c.first_ms, \
         (SELECT json_extract(e.body, '$.body.severity') FROM case_events e \
          WHERE e.ticket = c.ticket AND e.kind = 'IRPlan' \
          ORDER BY e.audit_ms DESC, e.audit_seq DESC LIMIT 1) AS severity \
         FROM cases c WHERE {which_cases} \
         AND c.ticket NOT IN (SELECT ticket FROM dispositions) \
         AND (?1 = '' OR c.site = ?1) AND c.first_ms >= ?2) \
         WHERE (?3 = '' OR severity = ?3) ORDER BY first_ms DESC LIMIT ?4"
    ))
    .bind(q.site.as_deref().unwrap_or("").trim())
    .bind(since)
    .bind(q.severity.as_deref().unwrap_or("").trim())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Queued {
            ticket: r.get(0),
            site: r.get(1),
            host: r.get(2),
            rule: r.get(3),
            first_ms: r.get(4),
            severity: r.get(5),
        })
        .collect())
}

/// Undecided proposals still open at `now_ms`, newest first, filtered like the case queues.
async fn pending_approvals(
    pool: &SqlitePool,
    q: &QueueQuery,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<crate::proto::ActionProposed>, StoreError> {
    let since = since(pool, q).await?;
    let rows = sqlx::query(
        "SELECT p.body FROM proposals p LEFT JOIN decisions d ON d.action_id = p.action_id \
         LEFT JOIN cases c ON c.ticket = p.ticket \
         WHERE d.action_id IS NULL AND p.expires_at_ms > ?1 \
         AND (?2 = '' OR c.site = ?2) \
         AND (?3 = '' OR json_extract(p.body, '$.severity') = ?3) \
         AND (c.first_ms IS NULL OR c.first_ms >= ?4) \
         ORDER BY p.proposed_at_ms DESC, p.action_id LIMIT ?5",
    )
    .bind(now_ms)
    .bind(q.site.as_deref().unwrap_or("").trim())
    .bind(q.severity.as_deref().unwrap_or("").trim())
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok())
        .collect())
}

async fn queues_page(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Response {
    let session = match viewer(&c, &headers, peer, "/queues") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let me = session.as_ref().map(|(a, _)| a);
    if let Some(s) = q
        .severity
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        && !matches!(s, "SEV-1" | "SEV-2" | "SEV-3" | "SEV-4")
    {
        return error_response(
            &c.web,
            StatusCode::BAD_REQUEST,
            &format!("severity must be SEV-1, SEV-2, SEV-3 or SEV-4, not {s:?}"),
            me,
        );
    }
    if let Some(h) = q.age_h.as_deref().map(str::trim).filter(|h| !h.is_empty())
        && h.parse::<u32>().is_err()
    {
        return error_response(
            &c.web,
            StatusCode::BAD_REQUEST,
            &format!("age_h must be a whole number of hours, not {h:?}"),
            me,
        );
    }
    let mut body = format!(
        "<form method=\"get\" action=\"/queues\" id=\"filters\"><label>Site <input name=\"site\" \
         value=\"{}\"></label> <label>Severity <select name=\"severity\"><option value=\"\">any\
         </option>{}</select></label> <label>Opened within (hours of the newest case) \
         <input name=\"age_h\" size=\"4\" value=\"{}\"></label> <button type=\"submit\">Filter\
         </button></form>",
        esc(q.site.as_deref().unwrap_or("")),
        ["SEV-1", "SEV-2", "SEV-3", "SEV-4"]
            .iter()
            .map(|s| format!(
                "<option{}>{s}</option>",
                if q.severity.as_deref() == Some(s) {
                    " selected"
                } else {
                    ""
                }
            ))
            .collect::<String>(),
        esc(q.age_h.as_deref().unwrap_or(""))
    );
    for (which, id, title) in [
        (
            Queue::Review,
            "review-queue",
            "Needs human review: a role could not decide",
        ),
        (
            Queue::Escalated,
            "escalated-queue",
            "Escalated, no disposition yet",
        ),
    ] {
        let html = match queue(&c.pool, which, &q, QUEUE_ROWS).await {
            Ok(rows) if rows.is_empty() => "<p>Empty.</p>".to_owned(),
            Ok(rows) => {
                let mut html = String::from(
                    "<table><tr><th>Case</th><th>Site</th><th>Host</th><th>Rule</th>\
                     <th>Severity</th><th>Opened</th></tr>",
                );
                for r in rows {
                    let _ = write!(
                        html,
                        "<tr class=\"queued\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                         <td>{}</td><td>{}</td></tr>",
                        case_link(&r.ticket),
                        show(&r.site),
                        show(&r.host),
                        show(&r.rule),
                        r.severity.as_deref().map_or("-".to_owned(), show),
                        when(r.first_ms)
                    );
                }
                html.push_str("</table>");
                html
            }
            Err(e) => format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
        };
        section(&mut body, id, title, &html);
    }
    let html = match pending_approvals(&c.pool, &q, crate::proto::now_ms(), QUEUE_ROWS).await {
        Ok(rows) if rows.is_empty() => "<p>Nothing waits for a decision.</p>".to_owned(),
        Ok(rows) => {
            let mut html = String::from(
                "<table><tr><th>Action</th><th>Case</th><th>Severity</th><th>For</th>\
                 <th>Expires</th></tr>",
            );
            for a in rows {
                let _ = write!(
                    html,
                    "<tr class=\"pending\"><td><a href=\"/approvals/{}\">{} on {}</a></td>\
                     <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    encode(&a.action_id),
                    show(&a.step.action),
                    show(&a.step.target),
                    case_link(&a.case.ticket),
                    label(&a.severity),
                    esc(&a.approver_role),
                    when(a.expires_at_ms)
                );
            }
            html.push_str("</table>");
            html
        }
        Err(e) => format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
    };
    section(&mut body, "approval-queue", "Pending approvals", &html);
    Html(page(&c.web, "Queues", &body, me)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_ids_become_attack_paths_and_nothing_else_does() {
        assert_eq!(attack_path("T1110").as_deref(), Some("T1110"));
        assert_eq!(attack_path("t1110.001").as_deref(), Some("T1110/001"));
        assert_eq!(attack_path("T1110/../x"), None);
        assert_eq!(attack_path("javascript:alert(1)"), None);
        assert_eq!(attack_path("T11100"), None);
    }

    #[test]
    fn classifications_teach_escalate_or_close() {
        use Classification::*;
        assert_eq!(ConfirmedMalicious.disposition(), Disposition::Escalate);
        assert_eq!(BenignTruePositive.disposition(), Disposition::Close);
        assert_eq!(FalsePositive.disposition(), Disposition::Close);
        for c in Classification::ALL {
            assert_eq!(Classification::parse(c.key()), Some(c));
        }
        assert_eq!(Classification::parse("escalate"), None);
    }
}
