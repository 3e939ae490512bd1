//! Webex: a card per IR plan in the SOC's room, and analysts' feedback from its buttons.
//!
//! - **Cards.** The projector queues one card per `IrPlan` it folds (the store's `cards`, see
//!   `migrations/0007_webex.sql`); the notifier actor (`crate::actors::notifier`) sends the
//!   due ones with `send_due`: `POST /v1/messages` to the configured room, an Adaptive Card
//!   (severity-styled header, the case, the plan's sections, "Action required from: &lt;role&gt;",
//!   Approve / Reject buttons opening the approval page) plus a markdown fallback. A failed send
//!   is retried with exponential backoff (a 429's `Retry-After` is honoured) up to
//!   `max_attempts`; a card whose proposals have expired is not sent. Sending never blocks a
//!   case: the roles never wait for it, and the queue survives restarts.
//! - **Feedback.** The card's `Action.Submit` buttons ("Verdict wrong: benign", "Confirmed
//!   malicious") come back as `attachmentActions` webhooks ([`webhook`]); the analyst's
//!   disposition becomes ground truth in the store's `dispositions`.
//!
//! Everything an alert says is attacker-controlled: card text escapes markdown and defangs
//! URLs, so an alert cannot add links or formatting to a card.
//!
//! A restart loses nothing: the queue, each card's attempts and Webex's message ids are in the
//! store. A card posted but not yet marked sent when the process died is posted again (at
//! least once).

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{Row, SqlitePool};

use crate::proto::{IrPlan, Severity};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::text::md;

pub mod webhook;

/// `[webex]`: the room cards go to, the bot that posts them, the webhook's secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebexConfig {
    /// Webex API base URL (tests point it at a local recorder).
    pub api_base: String,
    /// Room the cards are posted to; empty: no cards.
    pub room_id: String,
    /// The bot's access token (`SOC_WEBEX_BOT_TOKEN`); unset: no cards, no feedback.
    pub bot_token: Option<Secret>,
    /// Secret of the `attachmentActions` webhook (`SOC_WEBEX_WEBHOOK_SECRET`); unset: the
    /// webhook endpoint refuses everything.
    pub webhook_secret: Option<Secret>,
    /// The approval pages' address as approvers' browsers reach it (the cards link there);
    /// empty: `http://<http.addr>`.
    pub approvals_url: String,
    /// E-mail addresses whose card feedback is recorded; anyone else's is refused.
    pub feedback_from: Vec<String>,
    /// Timeout of each Webex API request, ms.
    pub timeout_ms: u64,
    /// First retry delay of a failed card, ms (doubling per attempt).
    pub retry_initial_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// Attempts before a card is given up (logged as an error).
    pub max_attempts: u32,
    /// How often the notifier looks for due cards, ms.
    pub poll_ms: u64,
}

impl Default for WebexConfig {
    fn default() -> Self {
        Self {
            api_base: "https://webexapis.com".into(),
            room_id: String::new(),
            bot_token: None,
            webhook_secret: None,
            approvals_url: String::new(),
            feedback_from: Vec::new(),
            timeout_ms: 10_000,
            retry_initial_ms: 2_000,
            retry_max_ms: 300_000,
            max_attempts: 10,
            poll_ms: 1_000,
        }
    }
}

impl WebexConfig {
    /// Whether cards are sent (a room and a bot token).
    pub(crate) fn sends_cards(&self) -> bool {
        !self.room_id.is_empty() && self.bot_token.is_some()
    }

    /// Checks the URLs and the retry policy.
    pub fn validate(&self) -> Result<(), WebexError> {
        crate::outbound::api_url("webex.api_base", &self.api_base)?;
        if !self.approvals_url.is_empty() {
            let url = reqwest::Url::parse(&self.approvals_url).map_err(|e| {
                WebexError::Config(format!(
                    "webex.approvals_url {:?} is not a URL: {e}",
                    self.approvals_url
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(WebexError::Config(
                    "webex.approvals_url must be http or https".into(),
                ));
            }
        }
        if let Some(token) = &self.bot_token
            && token.expose().trim().is_empty()
        {
            return Err(WebexError::Config(
                "webex.bot_token (SOC_WEBEX_BOT_TOKEN) is set but empty".into(),
            ));
        }
        if let Some(secret) = &self.webhook_secret {
            // HMAC takes any key, the empty one too: a short secret signs for anyone.
            if secret.expose().len() < 16 {
                return Err(WebexError::Config(
                    "webex.webhook_secret (SOC_WEBEX_WEBHOOK_SECRET) must be at least 16 bytes"
                        .into(),
                ));
            }
            if self.feedback_from.is_empty() || self.room_id.is_empty() {
                return Err(WebexError::Config(
                    "webex.webhook_secret is set but room_id or feedback_from is empty: every \
                     card feedback would be refused"
                        .into(),
                ));
            }
        }
        if !self.room_id.is_empty() && self.bot_token.is_none() {
            return Err(WebexError::Config(
                "webex.room_id is set but there is no bot token (SOC_WEBEX_BOT_TOKEN): no card \
                 could be sent"
                    .into(),
            ));
        }
        if self.max_attempts == 0 || self.retry_initial_ms == 0 || self.poll_ms == 0 {
            return Err(WebexError::Config(
                "webex.max_attempts, retry_initial_ms and poll_ms must be at least 1".into(),
            ));
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(WebexError::Config(
                "webex.retry_max_ms must not be below retry_initial_ms".into(),
            ));
        }
        Ok(())
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failures.
    pub(crate) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u64 << attempts.saturating_sub(1).min(30);
        Duration::from_millis(
            self.retry_initial_ms
                .saturating_mul(factor)
                .min(self.retry_max_ms),
        )
    }
}

/// Why a Webex request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebexError {
    /// A setting is refused.
    #[error("{0}")]
    Config(String),
    /// The API address or client is refused.
    #[error(transparent)]
    Outbound(#[from] crate::outbound::OutboundError),
    /// Worth retrying (network, timeout, 429, 5xx), after `after` when Webex said.
    #[error("{message}")]
    Retry {
        /// What failed.
        message: String,
        /// Webex's `Retry-After`.
        after: Option<Duration>,
    },
    /// Retrying will not help (a 4xx: bad token, unknown room, malformed card).
    #[error("{0}")]
    Permanent(String),
}

/// A Webex API client with the bot's token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

/// An `attachmentActions` record: what a person submitted on a card.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttachmentAction {
    /// The action's id.
    pub id: String,
    /// The card's message.
    pub message_id: String,
    /// Who pressed the button.
    pub person_id: String,
    /// Where.
    pub room_id: String,
    /// The card's inputs and the button's data.
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
}

impl Client {
    /// A client of `config`'s API with its bot token; `None` without one.
    pub fn new(config: &WebexConfig) -> Result<Option<Self>, WebexError> {
        let Some(token) = config.bot_token.clone() else {
            return Ok(None);
        };
        let http = crate::outbound::api_client(config.timeout_ms)?;
        Ok(Some(Self {
            http,
            base: config.api_base.trim_end_matches('/').to_owned(),
            token,
        }))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, WebexError> {
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| WebexError::Retry {
                message: format!("Webex unreachable: {e}"),
                after: None,
            })?;
        let status = response.status();
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(300).collect();
        if status.is_success() {
            // Accepted is accepted: an unreadable answer must not make a message be sent
            // again.
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let message = format!("Webex answered {status}: {excerpt}");
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            Err(WebexError::Retry { message, after })
        } else {
            Err(WebexError::Permanent(message))
        }
    }

    /// Posts a message (`POST /v1/messages`); returns its id (`None` if Webex accepted it
    /// without saying).
    pub(crate) async fn post_message(&self, message: &Value) -> Result<Option<String>, WebexError> {
        let url = format!("{}/v1/messages", self.base);
        let answer = self.send(self.http.post(url).json(message)).await?;
        Ok(answer
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned))
    }

    /// Fetches an attachment action (`GET /v1/attachment/actions/{id}`).
    pub(crate) async fn attachment_action(&self, id: &str) -> Result<AttachmentAction, WebexError> {
        let url = format!("{}/v1/attachment/actions/{}", self.base, path_id(id)?);
        let answer = self.send(self.http.get(url)).await?;
        serde_json::from_value(answer)
            .map_err(|e| WebexError::Permanent(format!("unexpected attachment action: {e}")))
    }

    /// The e-mail addresses of a person (`GET /v1/people/{id}`).
    pub(crate) async fn person_emails(&self, id: &str) -> Result<Vec<String>, WebexError> {
        let url = format!("{}/v1/people/{}", self.base, path_id(id)?);
        let answer = self.send(self.http.get(url)).await?;
        Ok(answer
            .get("emails")
            .and_then(Value::as_array)
            .map(|emails| {
                emails
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A Webex id as a path segment: Webex ids are base64url-ish; anything else is refused rather
/// than put in a URL.
fn path_id(id: &str) -> Result<&str, WebexError> {
    if !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
    {
        Ok(id)
    } else {
        Err(WebexError::Permanent(format!(
            "not a Webex id: {:?}",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// Most entries of each plan section on a card.
const MAX_ENTRIES: usize = 5;
/// Longest markdown fallback, bytes (Webex caps a message's text near 7,400 bytes).
const MAX_MARKDOWN: usize = 7_000;

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The confirmation page of `action_id` for `decision` (`approve` | `reject`).
pub(crate) fn approval_link(approvals_url: &str, action_id: &str, decision: &str) -> String {
    let mut encoded = String::new();
    for b in action_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(b));
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!(
        "{}/approvals/{encoded}?decision={decision}",
        approvals_url.trim_end_matches('/')
    )
}

fn severity_style(severity: Severity) -> &'static str {
    match severity {
        Severity::Sev1 => "attention",
        Severity::Sev2 => "warning",
        Severity::Sev3 => "accent",
        Severity::Sev4 => "emphasis",
    }
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Sev1 => "SEV-1",
        Severity::Sev2 => "SEV-2",
        Severity::Sev3 => "SEV-3",
        Severity::Sev4 => "SEV-4",
    }
}

/// The `POST /v1/messages` body of `plan`'s card in `room_id`: an Adaptive Card and its
/// markdown fallback. `confidence` is the case's latest (Tier 2's), when known.
pub(crate) fn card_message(
    room_id: &str,
    plan: &IrPlan,
    confidence: Option<f64>,
    approvals_url: &str,
) -> Value {
    let case = &plan.case;
    let severity = severity_label(plan.severity);
    let role = crate::approvals::approver_for(plan.severity);
    let title = format!("{severity} incident: {}", md(&case.rule_name));
    let priority = case
        .priority
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    let confidence = confidence.map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
    let facts = [
        ("Ticket", md(&case.ticket)),
        ("Host", md(&case.host)),
        ("User", md(case.user.as_deref().unwrap_or("-"))),
        ("Priority", priority.clone()),
        ("Confidence", confidence.clone()),
        (
            "Rule",
            format!("{} ({})", md(&case.rule_name), md(&case.rule_id)),
        ),
    ];
    let mut body = vec![
        json!({
            "type": "Container",
            "style": severity_style(plan.severity),
            "bleed": true,
            "items": [{"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Large",
                       "wrap": true}]
        }),
        json!({"type": "FactSet", "facts": facts.iter()
            .map(|(t, v)| json!({"title": t, "value": v})).collect::<Vec<_>>()}),
        json!({"type": "TextBlock", "text": md(&plan.summary), "wrap": true}),
    ];
    let mut markdown = format!(
        "**{title}**\n\nTicket {} · host {} · user {} · priority {priority} · confidence \
         {confidence}\n\n{}\n\n",
        md(&case.ticket),
        md(&case.host),
        md(case.user.as_deref().unwrap_or("-")),
        md(&plan.summary)
    );
    if !plan.containment.is_empty() {
        body.push(heading("Containment (each needs a human decision)"));
        markdown.push_str("**Containment** (each needs a human decision)\n");
        for step in plan.containment.iter().take(MAX_ENTRIES) {
            let action_id = crate::approvals::action_id(&case.ticket, &step.step_id);
            let approve = approval_link(approvals_url, &action_id, "approve");
            let reject = approval_link(approvals_url, &action_id, "reject");
            // Why this action: the evidence it rests on (the confirmation page shows it all).
            let because = step
                .evidence
                .first()
                .map_or(String::new(), |e| format!(" (because: {})", md(e)));
            let line = format!(
                "{} on {}: {}{because}",
                md(&step.action),
                md(&step.target),
                md(&step.description)
            );
            body.push(json!({"type": "TextBlock", "text": format!("- {line}"), "wrap": true}));
            body.push(json!({"type": "ActionSet", "actions": [
                {"type": "Action.OpenUrl", "title": "Approve", "url": approve, "style": "positive"},
                {"type": "Action.OpenUrl", "title": "Reject", "url": reject, "style": "destructive"}
            ]}));
            let _ = writeln!(
                markdown,
                "- {line} ([approve]({approve}) · [reject]({reject}))"
            );
        }
    }
    for (name, entries) in [
        ("Eradication", &plan.eradication),
        ("Recovery", &plan.recovery),
        ("Notify", &plan.notifications),
    ] {
        if entries.is_empty() {
            continue;
        }
        body.push(heading(name));
        let _ = writeln!(markdown, "**{name}**");
        for entry in entries.iter().take(MAX_ENTRIES) {
            body.push(
                json!({"type": "TextBlock", "text": format!("- {}", md(entry)), "wrap": true}),
            );
            let _ = writeln!(markdown, "- {}", md(entry));
        }
    }
    let required = format!("Action required from: **{role}**");
    body.push(json!({"type": "TextBlock", "text": required, "wrap": true, "size": "Medium"}));
    let _ = write!(markdown, "\n{required}");
    let feedback = |title: &str, disposition: &str| {
        json!({"type": "Action.Submit", "title": title,
               "data": {"kind": "feedback", "disposition": disposition}})
    };
    json!({
        "roomId": room_id,
        "markdown": cut(markdown, MAX_MARKDOWN),
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.3",
                "body": body,
                "actions": [
                    feedback("Verdict wrong: benign", "close"),
                    feedback("Confirmed malicious", "escalate")
                ]
            }
        }]
    })
}

fn heading(text: &str) -> Value {
    json!({"type": "TextBlock", "text": text, "weight": "Bolder", "spacing": "Medium"})
}

/// What one [`send_due`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendReport {
    /// Cards posted.
    pub sent: usize,
    /// Cards that failed and wait for a retry.
    pub retrying: usize,
    /// Cards given up (permanent error, or out of attempts).
    pub failed: usize,
    /// Cards not sent because their proposals expired first.
    pub expired: usize,
}

/// Sends the queued cards due at `now_ms` (oldest first, up to `batch`): posts each, records it
/// sent, or schedules its retry. Cards older than `max_age_ms` (their proposals expired) are
/// marked expired instead.
pub(crate) async fn send_due(
    pool: &SqlitePool,
    client: &Client,
    config: &WebexConfig,
    approvals_url: &str,
    max_age_ms: i64,
    batch: usize,
    now_ms: i64,
) -> Result<SendReport, StoreError> {
    let rows = sqlx::query(
        "SELECT c.plan_id, c.plan, c.created_ms, c.attempts, k.confidence FROM cards c \
         LEFT JOIN cases k ON k.ticket = c.ticket \
         WHERE c.status = 'queued' AND c.next_attempt_ms <= ? ORDER BY c.next_attempt_ms LIMIT ?",
    )
    .bind(now_ms)
    .bind(i64::try_from(batch).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let mut report = SendReport::default();
    for row in rows {
        let plan_id: String = row.get(0);
        let created_ms: i64 = row.get(2);
        let attempts = u32::try_from(row.get::<i64, _>(3)).unwrap_or(u32::MAX);
        if now_ms.saturating_sub(created_ms) > max_age_ms {
            tracing::info!(plan = %plan_id, "card not sent: its proposals expired first");
            set_status(pool, &plan_id, "expired", attempts, None).await?;
            report.expired += 1;
            continue;
        }
        let plan: IrPlan = match serde_json::from_str(&row.get::<String, _>(1)) {
            Ok(plan) => plan,
            Err(e) => {
                let why = format!("unreadable plan: {e}");
                tracing::error!(plan = %plan_id, error = %why, "card given up");
                set_status(pool, &plan_id, "failed", attempts, Some(&why)).await?;
                report.failed += 1;
                continue;
            }
        };
        let message = card_message(&config.room_id, &plan, row.get(4), approvals_url);
        let attempts = attempts.saturating_add(1);
        match client.post_message(&message).await {
            Ok(message_id) => {
                if message_id.is_none() {
                    tracing::warn!(plan = %plan_id, "Webex accepted the card without a message id: \
                        its feedback buttons cannot be matched to it");
                }
                mark_sent(pool, &plan_id, attempts, message_id.as_deref(), now_ms).await?;
                tracing::info!(plan = %plan_id, attempts, "card sent to Webex");
                report.sent += 1;
            }
            Err(WebexError::Retry { message, after }) if attempts < config.max_attempts => {
                let cap = Duration::from_millis(config.retry_max_ms);
                let delay = after.map_or_else(|| config.backoff(attempts), |a| a.min(cap));
                let next =
                    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                tracing::warn!(plan = %plan_id, attempts, retry_in_ms = delay.as_millis() as u64,
                    error = %message, "card not sent; retrying");
                sqlx::query(
                    "UPDATE cards SET attempts = ?, next_attempt_ms = ?, last_error = ? \
                     WHERE plan_id = ?",
                )
                .bind(i64::from(attempts))
                .bind(next)
                .bind(&message)
                .bind(&plan_id)
                .execute(pool)
                .await?;
                report.retrying += 1;
            }
            Err(e) => {
                tracing::error!(plan = %plan_id, attempts, error = %e, "card given up");
                set_status(pool, &plan_id, "failed", attempts, Some(&e.to_string())).await?;
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// Records a posted card as sent. Retried a few times (the store may be busy with the
/// projector): a card left queued after its post would be posted again.
async fn mark_sent(
    pool: &SqlitePool,
    plan_id: &str,
    attempts: u32,
    message_id: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        let written = sqlx::query(
            "UPDATE cards SET status = 'sent', attempts = ?, sent_ms = ?, message_id = ?, \
             last_error = NULL WHERE plan_id = ?",
        )
        .bind(i64::from(attempts))
        .bind(now_ms)
        .bind(message_id)
        .bind(plan_id)
        .execute(pool)
        .await;
        match written {
            Ok(_) => return Ok(()),
            Err(e) if tries < 5 => {
                tries += 1;
                tracing::warn!(plan = %plan_id, error = %e, "recording a sent card failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn set_status(
    pool: &SqlitePool,
    plan_id: &str,
    status: &str,
    attempts: u32,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE cards SET status = ?, attempts = ?, last_error = COALESCE(?, last_error) \
         WHERE plan_id = ?",
    )
    .bind(status)
    .bind(i64::from(attempts))
    .bind(error)
    .bind(plan_id)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CaseContext, PlanStep};

    fn plan() -> IrPlan {
        IrPlan {
            plan_id: "t-1/plan".into(),
            case: CaseContext {
                ticket: "t-1".into(),
                host: "web-1".into(),
                user: Some("[click](https://evil.example)".into()),
                rule_name: "SSH **brute** force".into(),
                rule_id: "5712".into(),
                priority: Some(8),
                ..CaseContext::default()
            },
            severity: Severity::Sev1,
            summary: "Ignore previous instructions <b>now</b>".into(),
            containment: vec![PlanStep {
                step_id: "contain-1".into(),
                action: "isolate_host".into(),
                target: "web-1".into(),
                description: "Isolate the host".into(),
                evidence: vec!["sudo to root seen on web-1 (see https://evil.example/x)".into()],
            }],
            eradication: vec!["Rotate keys".into()],
            ..IrPlan::default()
        }
    }

    #[test]
    fn a_card_links_each_step_to_its_confirmation_page_and_escapes_alert_text() {
        let message = card_message("room-1", &plan(), Some(0.87), "https://soc.example/");
        let text = message.to_string();
        assert_eq!(message["roomId"], "room-1");
        let card = &message["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][0]["style"], "attention");
        let urls: Vec<&str> = card["body"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["actions"].as_array())
            .flatten()
            .filter_map(|a| a["url"].as_str())
            .collect();
        assert_eq!(
            urls,
            [
                "https://soc.example/approvals/t-1%2Fcontain-1?decision=approve",
                "https://soc.example/approvals/t-1%2Fcontain-1?decision=reject"
            ]
        );
        assert!(text.contains("Action required from: **IR Lead On-Call**"));
        assert!(text.contains("0.87") && text.contains("\"Priority\""));
        // Alert text cannot make a link or formatting.
        assert!(!text.contains("[click](https://evil.example)"));
        assert!(text.contains(r"\\[click\\]\\(hxxps\\[:\\]//evil.example\\)"));
        assert!(text.contains(r"SSH \\*\\*brute\\*\\* force"));
        // Each step says why, inert like the rest.
        assert!(
            text.contains(r"(because: sudo to root seen on web-1 \\(see hxxps"),
            "{text}"
        );
        assert!(!text.contains("<b>"));
        let submits: Vec<&str> = card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["data"]["disposition"].as_str().unwrap())
            .collect();
        assert_eq!(submits, ["close", "escalate"]);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = WebexConfig {
            retry_initial_ms: 100,
            retry_max_ms: 1000,
            ..WebexConfig::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| config.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn config_refuses_plain_http_to_a_remote_api() {
        let mut config = WebexConfig {
            api_base: "http://webexapis.com".into(),
            ..WebexConfig::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("https"));
        config.api_base = "http://127.0.0.1:9".into();
        assert!(config.validate().is_ok());
        config.webhook_secret = Some(Secret::new(""));
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at least 16 bytes")
        );
        config.webhook_secret = Some(Secret::new("0123456789abcdef"));
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("feedback_from")
        );
        config.webhook_secret = None;
        config.room_id = "room".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("no bot token")
        );
        config.bot_token = Some(Secret::new(" "));
        assert!(config.validate().unwrap_err().to_string().contains("empty"));
        assert!(path_id("abc/../x").is_err() && path_id("Y2lzY29zcGFyazovL3Vz").is_ok());
    }
}
