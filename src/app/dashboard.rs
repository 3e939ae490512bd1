//! `GET /`: the SOC's dashboard, server-rendered with no external assets (it works offline)
//! and refreshed every 10 s: live cases and their stage, role health, the LLM gateway,
//! pending approvals, the latest backtest with its per-site chart, and campaigns.
//!
//! Sources: the store (cases, approvals, campaigns), the actors' counters and the bus (via
//! [`crate::app::metrics::Sources`]), the supervisor's health, and `<data_dir>/last-backtest.json`
//! (written by `soc-runtime backtest`). Once approvers or an SSO proxy are configured it needs
//! a sign-in, like the approval pages; without them it is open, which the configuration allows
//! only on a loopback address.
//!
//! Read-only: a restart loses only the one-minute campaigns cache.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use sqlx::{Row, SqlitePool};

use crate::actors::roles::REACTIVE_ROLES;
use crate::app::health::Health;
use crate::app::metrics::Sources;
use crate::approvals::web::{Peer, Web};
use crate::backtest::score::Summary;
use crate::text::{encode, esc, show};

/// Cases shown.
const CASES: usize = 15;
/// Campaign window, before the newest case.
const CAMPAIGN_WINDOW_MS: i64 = 14 * 24 * 3600 * 1000;

/// How long the campaigns panel is reused: clustering reads the window's indicators.
const CAMPAIGNS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// What the dashboard reads.
pub(crate) struct Dashboard {
    web: Arc<Web>,
    sources: Arc<Sources>,
    health: Arc<Health>,
    pool: SqlitePool,
    data_dir: PathBuf,
    campaigns: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl Dashboard {
    /// The dashboard: sign-in shared with the approval pages, the counters and the bus, the
    /// supervisor's health, the store, and where `last-backtest.json` is.
    pub(crate) fn new(
        web: Arc<Web>,
        sources: Arc<Sources>,
        health: Arc<Health>,
        pool: SqlitePool,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            web,
            sources,
            health,
            pool,
            data_dir,
            campaigns: tokio::sync::Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// The dashboard's route.
pub(crate) fn routes(dashboard: Arc<Dashboard>) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .with_state(dashboard)
}

/// A case's stage, from its latest event.
fn stage(kind: &str) -> &'static str {
    use crate::proto::{
        ActionDecision, ActionProposed, AlertReceived, AlertTriaged, CaseEscalated, EventKind,
        IrPlan, ThreatIntelReport, Tier2Analysis,
    };
    [
        (AlertReceived::KIND, "received"),
        (AlertTriaged::KIND, "triaged"),
        (Tier2Analysis::KIND, "investigated"),
        (CaseEscalated::KIND, "escalated"),
        (IrPlan::KIND, "planned"),
        (ActionProposed::KIND, "awaiting approval"),
        (ActionDecision::KIND, "decided"),
        (ThreatIntelReport::KIND, "attributed"),
    ]
    .into_iter()
    .find_map(|(k, stage)| (k == kind).then_some(stage))
    .unwrap_or("other")
}

async fn index(State(d): State<Arc<Dashboard>>, peer: Peer, headers: HeaderMap) -> Response {
    let viewer = d.web.viewer(&headers, peer);
    if d.web.sign_in_required() && viewer.is_none() {
        return Redirect::to("/login?next=%2F").into_response();
    }
    let mut body = String::new();
    let report = d.health.report();
    let _ = write!(
        body,
        "<header><h1>soc-runtime</h1><span class=\"status {}\" id=\"status\">{}</span>\
         <span>bus {} ({})</span><nav><a href=\"/queues\">Queues</a>\
         <a href=\"/approvals?pending=1\">Approvals</a></nav>{}</header><main>",
        report.status,
        report.status,
        report.bus,
        if report.bus_connected {
            "connected"
        } else {
            "unreachable"
        },
        viewer.map_or(String::new(), |v| format!(
            "<span>signed in as {}</span><form method=\"post\" action=\"/logout\">\
             <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            esc(&v.name)
        ))
    );
    queues_panel(&d, &mut body).await;
    cases_panel(&d, &mut body).await;
    roles_panel(&d, &report.children, &mut body).await;
    gateway_panel(&d, &mut body);
    approvals_panel(&d, &mut body).await;
    backtest_panel(&d, &mut body);
    campaigns_panel(&d, &mut body).await;
    body.push_str("</main>");
    Html(page(&body)).into_response()
}

fn panel(body: &mut String, id: &str, title: &str, content: &str) {
    let _ = write!(
        body,
        "<section class=\"panel\" id=\"{id}\"><h2>{title}</h2>{content}</section>"
    );
}

async fn queues_panel(d: &Dashboard, body: &mut String) {
    let html = match crate::app::console::queue_counts(&d.pool).await {
        Ok((review, escalated, pending)) => format!(
            "<div class=\"kpis\"><div><a href=\"/queues#review-queue\">needs review</a>\
             <b id=\"needs-review-count\">{review}</b></div><div><a href=\"/queues#escalated-queue\">\
             escalated, no disposition</a><b id=\"escalated-count\">{escalated}</b></div>\
             <div><a href=\"/queues#approval-queue\">pending approvals</a>\
             <b id=\"pending-count\">{pending}</b></div></div>"
        ),
        Err(e) => format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
    };
    panel(body, "queues", "Queues", &html);
}

async fn cases_panel(d: &Dashboard, body: &mut String) {
    let rows = sqlx::query(
        "SELECT e.ticket, e.kind, e.at_ms, c.host, c.rule, c.escalated, \
         instr(e.body, '\"needs_human_review\"') > 0 FROM case_events e \
         LEFT JOIN cases c ON c.ticket = e.ticket ORDER BY e.audit_ms DESC, e.audit_seq DESC \
         LIMIT 500",
    )
    .fetch_all(&d.pool)
    .await;
    let mut html = String::new();
    match rows {
        Ok(rows) => {
            let mut seen = std::collections::HashSet::new();
            html.push_str(
                "<table><tr><th>Ticket</th><th>Stage</th><th>Host</th><th>Rule</th>\
                 <th>Updated</th></tr>",
            );
            for r in &rows {
                let ticket: String = r.get(0);
                if !seen.insert(ticket.clone()) {
                    continue;
                }
                if seen.len() > CASES {
                    break;
                }
                let kind: String = r.get(1);
                let escalated = r.get::<Option<i64>, _>(5).unwrap_or(0) != 0;
                let review = r.get::<Option<bool>, _>(6).unwrap_or(false);
                let _ = write!(
                    html,
                    "<tr class=\"case\"><td><a href=\"/cases/{}\">{}</a></td>\
                     <td><span class=\"stage {}\">{}</span></td>\
                     <td>{}</td><td>{}</td><td>{}</td></tr>",
                    encode(&ticket),
                    show(&ticket),
                    if escalated || review { "hot" } else { "calm" },
                    if review {
                        "needs human review"
                    } else {
                        stage(&kind)
                    },
                    show(&r.get::<Option<String>, _>(3).unwrap_or_default()),
                    show(&r.get::<Option<String>, _>(4).unwrap_or_default()),
                    when(r.get(2))
                );
            }
            html.push_str("</table>");
            if seen.is_empty() {
                html = "<p>No cases yet.</p>".into();
            }
        }
        Err(e) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(&e.to_string()));
        }
    }
    panel(body, "cases", "Live cases", &html);
}

async fn roles_panel(
    d: &Dashboard,
    children: &std::collections::BTreeMap<String, bool>,
    body: &mut String,
) {
    let groups: Vec<_> = REACTIVE_ROLES.iter().map(|r| (r.input, r.name)).collect();
    let states: HashMap<String, (u64, Option<u64>)> = d
        .sources
        .bus
        .group_states(&groups)
        .await
        .map(|s| {
            s.into_iter()
                .map(|g| (g.group, (g.pending, g.lag)))
                .collect()
        })
        .unwrap_or_default();
    let mut html = String::from(
        "<table><tr><th>Role</th><th>State</th><th>Processed</th><th>Failed</th>\
         <th>Restarts</th><th>Pending</th><th>Lag</th></tr>",
    );
    for (name, (_, stats)) in &d.sources.roles {
        let l = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let up = children.get(*name).copied();
        let (pending, lag) = states.get(*name).copied().unwrap_or((0, None));
        let _ = write!(
            html,
            "<tr class=\"role\"><td>{name}</td><td><span class=\"state {}\">{}</span></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{pending}</td><td>{}</td></tr>",
            match up {
                Some(true) => "up",
                Some(false) => "down",
                None => "elsewhere",
            },
            match up {
                Some(true) => "running",
                Some(false) => "down",
                None => "not in this process",
            },
            l(&stats.processed),
            l(&stats.commit_failures) + l(&stats.refused),
            l(&stats.restarts),
            lag.map_or_else(|| "-".to_owned(), |l| l.to_string()),
        );
    }
    html.push_str("</table>");
    panel(body, "roles", "Role health", &html);
}

/// `3 of 10 (30 %)`, or `-` before any answer.
fn invalid_share(valid: u64, invalid: u64) -> String {
    let all = valid + invalid;
    if all == 0 {
        return "-".to_owned();
    }
    format!(
        "{invalid} of {all} ({:.0} %)",
        invalid as f64 * 100.0 / all as f64
    )
}

fn gateway_panel(d: &Dashboard, body: &mut String) {
    let html = match &d.sources.llm {
        None => "<p>No model endpoints: every role decides with its rules.</p>".to_owned(),
        Some(llm) => {
            let g = llm.snapshot();
            let mut html = String::new();
            if let Some(down) = g.degraded_for_s {
                let _ = write!(
                    html,
                    "<p class=\"warn\"><strong>DEGRADED</strong>: every model endpoint has been \
                     unavailable for {down} s; roles decide by rules (their decisions are marked \
                     degraded) until one answers again.</p>"
                );
            }
            let _ = write!(
                html,
                "<p>Queue {} of {} (peak {}), failovers {}, overloads {}</p><table><tr>\
                 <th>Endpoint</th><th>Circuit</th><th>In flight</th><th>Answered</th>\
                 <th>Tokens in/out</th><th>Invalid answers</th></tr>",
                g.queued,
                g.queue_capacity,
                g.queue_peak,
                g.counters.get("failovers").copied().unwrap_or(0),
                g.counters.get("overloads").copied().unwrap_or(0)
            );
            for e in &g.endpoints {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{:?}</td><td>{}/{}</td><td>{}</td><td>{}/{}</td>\
                     <td>{}</td></tr>",
                    esc(&e.name),
                    e.circuit,
                    e.in_flight,
                    e.max_in_flight,
                    e.account.answered,
                    e.account.tokens_in,
                    e.account.tokens_out,
                    invalid_share(e.account.valid, e.account.invalid)
                );
            }
            html.push_str(
                "</table><table><tr><th>Role</th><th>Model answers</th><th>Invalid</th>\
                 <th>Tokens in/out</th><th>Cached</th><th>Degraded decisions</th></tr>",
            );
            for (role, a) in &g.roles {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
                    esc(role),
                    a.answered,
                    invalid_share(a.valid, a.invalid),
                    a.tokens_in,
                    a.tokens_out,
                    a.tokens_cached,
                    a.degraded
                );
            }
            html.push_str("</table>");
            html
        }
    };
    panel(body, "gateway", "LLM gateway", &html);
}

async fn approvals_panel(d: &Dashboard, body: &mut String) {
    let html = match crate::approvals::list(&d.pool, true, 8).await {
        Ok(rows) if rows.is_empty() => "<p>Nothing waits for a decision.</p>".to_owned(),
        Ok(rows) => {
            let mut html = String::from(
                "<table><tr><th>Action</th><th>Ticket</th><th>Severity</th><th>For</th></tr>",
            );
            for p in rows {
                let a = &p.proposed;
                let _ = write!(
                    html,
                    "<tr class=\"approval\"><td><a href=\"/approvals/{}\">{} on {}</a></td>\
                     <td><a href=\"/cases/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                    encode(&a.action_id),
                    show(&a.step.action),
                    show(&a.step.target),
                    encode(&a.case.ticket),
                    show(&a.case.ticket),
                    crate::proto::label(&a.severity),
                    esc(&a.approver_role)
                );
            }
            html.push_str("</table><p><a href=\"/approvals?pending=1\">All pending</a></p>");
            html
        }
        Err(e) => format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
    };
    panel(body, "approvals", "Pending approvals", &html);
}

fn backtest_panel(d: &Dashboard, body: &mut String) {
    let path = d.data_dir.join("last-backtest.json");
    let html = match std::fs::read_to_string(&path) {
        Err(_) => format!(
            "<p>No backtest yet: <code>soc-runtime backtest --tickets FILE</code> keeps its \
             summary in {}.</p>",
            esc(&path.display().to_string())
        ),
        Ok(text) => match serde_json::from_str::<Summary>(&text) {
            Err(e) => format!(
                "<p class=\"error\">{} is unreadable: {}</p>",
                esc(&path.display().to_string()),
                esc(&e.to_string())
            ),
            Ok(s) => {
                let mut html = format!(
                    "<div class=\"kpis\"><div>precision<b>{:.3}</b></div><div>recall<b>{:.3}</b>\
                     </div><div>F1<b>{:.3}</b></div><div>tickets<b>{}</b></div></div>",
                    s.precision, s.recall, s.f1, s.tickets
                );
                html.push_str(&crate::backtest::report::site_chart_svg(&s));
                html
            }
        },
    };
    panel(body, "backtest", "Latest backtest", &html);
}

async fn campaigns_panel(d: &Dashboard, body: &mut String) {
    // One clustering per minute, however many tabs refresh.
    let mut cached = d.campaigns.lock().await;
    if let Some((at, html)) = cached.as_ref()
        && at.elapsed() < CAMPAIGNS_TTL
    {
        body.push_str(html);
        return;
    }
    let mut fresh = String::new();
    campaigns_html(d, &mut fresh).await;
    body.push_str(&fresh);
    *cached = Some((std::time::Instant::now(), fresh));
}

async fn campaigns_html(d: &Dashboard, body: &mut String) {
    let newest: Option<i64> = sqlx::query("SELECT MAX(first_ms) FROM cases")
        .fetch_one(&d.pool)
        .await
        .ok()
        .and_then(|r| r.get(0));
    let html = match newest {
        None => "<p>No cases yet.</p>".to_owned(),
        Some(to_ms) => {
            let options = crate::memory::CampaignOptions {
                from_ms: to_ms.saturating_sub(CAMPAIGN_WINDOW_MS),
                to_ms,
                ..crate::memory::CampaignOptions::default()
            };
            match crate::memory::campaigns(&d.pool, options).await {
                Ok(found) if found.is_empty() => {
                    "<p>No campaigns in the 14 days before the newest case.</p>".to_owned()
                }
                Ok(found) => {
                    let mut html = String::from(
                        "<table><tr><th>Campaign</th><th>Cases</th><th>Shared</th></tr>",
                    );
                    for c in found.iter().take(10) {
                        let _ = write!(
                            html,
                            "<tr><td><a href=\"/cases/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                            encode(c.cases.first().map_or("", String::as_str)),
                            esc(&c.id),
                            c.cases.len(),
                            show(&c.shared.join(", "))
                        );
                    }
                    html.push_str("</table>");
                    html
                }
                Err(e) => format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
            }
        }
    };
    panel(body, "campaigns", "Campaigns", &html);
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%m-%d %H:%M:%S").to_string(),
    )
}

fn page(body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>soc-runtime</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1b1f24}}\
         header{{display:flex;gap:1.5em;align-items:center;padding:.6em 1.5em;background:#0d1117;\
         color:#e6edf3}}header h1{{font-size:1.2em;margin:0}}\
         main{{display:grid;grid-template-columns:repeat(auto-fit,minmax(38em,1fr));gap:1em;\
         padding:1em}}.panel{{background:#fff;border:1px solid #d0d7de;border-radius:6px;\
         padding:.2em 1em 1em;overflow:auto;max-height:32em}}.panel h2{{font-size:1.05em}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #eaeef2;\
         padding:.25em .5em;text-align:left;white-space:nowrap}}.status{{padding:.1em .6em;border-radius:1em}}\
         .ok{{background:#1a7f37}}.degraded{{background:#9a6700}}.draining{{background:#6e7781}}\
         .stage,.state{{padding:.05em .5em;border-radius:1em;background:#ddf4ff}}\
         .hot{{background:#ffebe9}}.up{{background:#dafbe1}}.down{{background:#ffebe9}}\
         nav{{display:flex;gap:1em}}nav a{{color:#e6edf3}}.kpis{{display:flex;gap:1em}}.kpis div{{border:1px solid #d0d7de;border-radius:6px;\
         padding:.4em .8em}}.kpis b{{display:block;font-size:1.5em}}.error{{color:#cf222e}}\
         </style></head><body>{body}</body></html>"
    )
}
