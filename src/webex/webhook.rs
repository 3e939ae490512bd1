//! `POST /webex/webhook`: analysts' feedback from the cards' `Action.Submit` buttons.
//!
//! In order, before anything is believed:
//! 1. No webhook secret configured: every request is refused (401).
//! 2. `X-Spark-Signature` must be the hex HMAC-SHA1 of the raw body with the secret, compared
//!    in constant time; a missing or wrong signature is 401, before the body is parsed.
//! 3. Only `attachmentActions` / `created` notifications are acted on (others: 200, ignored).
//! 4. An action id recorded before is answered 200 without another lookup (Webex redelivers).
//! 5. The action itself is fetched from the Webex API with the bot token: the notification only
//!    names it. It must come from the configured room, from one of the cards this runtime sent
//!    (the ticket is the card's, never the button's), and from a person whose e-mail is in
//!    `feedback_from` (403 otherwise).
//! 6. The disposition (`close` for "verdict wrong: benign", `escalate` for "confirmed
//!    malicious") is recorded once per action id, with the analyst's ticket facts, in
//!    `dispositions` (ground truth for the verdict store and backtests), and added to the rules
//!    reasoner's knowledge.
//!
//! State: the store (recorded actions and dispositions). A restart loses nothing; Webex's
//! redelivery of a webhook that was being handled is answered from the record.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;
use sqlx::{Row, SqlitePool};

use super::{Client, WebexConfig, WebexError};
use crate::knowledge::{Disposition, DispositionFacts, Knowledge};
use crate::proto::IrPlan;
use crate::store::StoreError;

/// The signature header Webex sends.
pub(crate) const SIGNATURE_HEADER: &str = "x-spark-signature";
/// Largest webhook body accepted, bytes (Webex's are well under 2 KiB).
const MAX_BODY: usize = 64 * 1024;

/// The webhook's state.
pub struct Hook {
    pool: SqlitePool,
    config: WebexConfig,
    client: Option<Client>,
    knowledge: Option<Arc<Knowledge>>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("room_id", &self.config.room_id)
            .field("secret", &self.config.webhook_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Hook {
    /// The webhook over the store at `pool`; recorded dispositions also go to `knowledge`.
    pub fn new(
        pool: SqlitePool,
        config: WebexConfig,
        knowledge: Option<Arc<Knowledge>>,
    ) -> Result<Self, super::WebexError> {
        let client = Client::new(&config)?;
        Ok(Self {
            pool,
            config,
            client,
            knowledge,
        })
    }
}

/// The webhook's route.
pub fn routes(hook: Arc<Hook>) -> axum::Router {
    axum::Router::new()
        .route("/webex/webhook", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hook)
}

/// Whether `signature` (hex) is the HMAC-SHA1 of `body` with `secret` (constant time).
pub(crate) fn signature_ok(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(tag) = signature.and_then(|s| unhex(s.trim())) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The hex HMAC-SHA1 signature of `body` (what Webex sends; tests sign with it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Deserialize)]
struct Notification {
    resource: String,
    event: String,
    data: NotificationData,
}

#[derive(Deserialize)]
struct NotificationData {
    id: String,
}

/// Why a webhook call is refused; [`Refusal::status`] is the one place statuses are chosen.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// No secret: every webhook is refused.
    #[error("no webhook secret is configured: every webhook is refused")]
    NoSecret,
    /// The signature is missing or wrong.
    #[error("missing or invalid X-Spark-Signature")]
    BadSignature,
    /// The body is not a notification.
    #[error("not a Webex notification: {0}")]
    NotNotification(#[source] serde_json::Error),
    /// No bot token to look the action up with.
    #[error("no Webex bot token is configured: the action cannot be looked up")]
    NoClient,
    /// Webex refused the lookup for good (the action does not exist for this bot).
    #[error("{0}")]
    LookupRefused(String),
    /// Webex could not be asked.
    #[error("{0}")]
    Upstream(#[source] WebexError),
    /// The action is from another room.
    #[error("the action is not from the configured room")]
    OtherRoom,
    /// The person is not allowed to record feedback.
    #[error("this person may not record feedback")]
    NotAllowed,
    /// The action has no disposition.
    #[error("the action carries no disposition (escalate or close)")]
    NoDisposition,
    /// The action is on no card of this runtime.
    #[error("the action is not on a card this runtime sent")]
    NoCard,
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl Refusal {
    /// The HTTP status of this refusal.
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NoSecret | Refusal::BadSignature => StatusCode::UNAUTHORIZED,
            Refusal::NotNotification(_) | Refusal::LookupRefused(_) | Refusal::NoDisposition => {
                StatusCode::BAD_REQUEST
            }
            Refusal::NoClient => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
            Refusal::OtherRoom | Refusal::NotAllowed => StatusCode::FORBIDDEN,
            Refusal::NoCard => StatusCode::NOT_FOUND,
            Refusal::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<WebexError> for Refusal {
    fn from(e: WebexError) -> Self {
        match e {
            WebexError::Permanent(message) => Refusal::LookupRefused(message),
            other => Refusal::Upstream(other),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        answer(self.status(), self.to_string())
    }
}

fn answer(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (code, axum::Json(serde_json::json!({ "message": message }))).into_response()
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&hook, &headers, &body).await {
        Ok(message) => answer(StatusCode::OK, message),
        Err(refusal) => refusal.into_response(),
    }
}

/// Verifies, looks up and records one notification; the OK message, or why not.
async fn handle(hook: &Hook, headers: &HeaderMap, body: &[u8]) -> Result<String, Refusal> {
    let Some(secret) = &hook.config.webhook_secret else {
        return Err(Refusal::NoSecret);
    };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if !signature_ok(secret.expose().as_bytes(), body, signature) {
        tracing::warn!(
            signed = signature.is_some(),
            "webhook refused: bad signature"
        );
        return Err(Refusal::BadSignature);
    }
    let note: Notification = serde_json::from_slice(body).map_err(Refusal::NotNotification)?;
    if note.resource != "attachmentActions" || note.event != "created" {
        return Ok(format!("ignored: {} {}", note.resource, note.event));
    }
    if recorded(&hook.pool, &note.data.id).await? {
        return Ok("already recorded".into());
    }
    let Some(client) = &hook.client else {
        return Err(Refusal::NoClient);
    };
    let action = client.attachment_action(&note.data.id).await?;
    if action.id != note.data.id || action.room_id != hook.config.room_id {
        return Err(Refusal::OtherRoom);
    }
    let emails = client
        .person_emails(&action.person_id)
        .await
        .map_err(Refusal::Upstream)?;
    let Some(person) = emails.iter().find(|e| {
        hook.config
            .feedback_from
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(e))
    }) else {
        tracing::warn!(person = %action.person_id, "card feedback refused: person not in webex.feedback_from");
        return Err(Refusal::NotAllowed);
    };
    let disposition = action
        .inputs
        .get("disposition")
        .and_then(|v| v.as_str())
        .and_then(Disposition::parse);
    let Some(disposition) = disposition else {
        return Err(Refusal::NoDisposition);
    };
    match record(
        &hook.pool,
        &action.id,
        &action.message_id,
        disposition,
        person,
        crate::proto::now_ms(),
    )
    .await?
    {
        Recorded::New(facts) => {
            tracing::info!(ticket = %facts.ticket, disposition = disposition.label(), person = %person,
                "analyst feedback recorded");
            if let Some(k) = &hook.knowledge {
                k.add_dispositions(std::iter::once(&*facts));
            }
            Ok(format!(
                "recorded: {} {}",
                facts.ticket,
                disposition.label()
            ))
        }
        Recorded::Before => Ok("already recorded".into()),
        Recorded::NoCard => Err(Refusal::NoCard),
    }
}

async fn recorded(pool: &SqlitePool, action_id: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT 1 FROM feedback WHERE action_id = ?")
        .bind(action_id)
        .fetch_optional(pool)
        .await?
        .is_some())
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Recorded: the disposition with its ticket's facts.
    New(Box<DispositionFacts>),
    /// This action was recorded before: nothing changed.
    Before,
    /// No card of this runtime has that message id.
    NoCard,
}

/// Records `person`'s `disposition` from attachment action `action_id` on the card sent as
/// `message_id`: once per action, in one transaction with the ticket's disposition.
pub async fn record(
    pool: &SqlitePool,
    action_id: &str,
    message_id: &str,
    disposition: Disposition,
    person: &str,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let card = sqlx::query("SELECT plan FROM cards WHERE message_id = ? AND message_id <> ''")
        .bind(message_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(plan) = card.and_then(|r| serde_json::from_str::<IrPlan>(&r.get::<String, _>(0)).ok())
    else {
        return Ok(Recorded::NoCard);
    };
    let case = plan.case;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO feedback (action_id, ticket, disposition, person, at_ms) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(action_id)
    .bind(&case.ticket)
    .bind(disposition.label())
    .bind(person)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Recorded::Before);
    }
    // The disposition goes on the bus too (relayed from the outbox with the decisions), so
    // every process's reasoner learns it and the audit keeps it.
    let facts = crate::store::record_disposition(
        &mut tx,
        &case,
        disposition,
        person,
        "webex",
        None,
        false,
        &format!("disposition:webex:{action_id}"),
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(Recorded::New(Box::new(facts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_body_with_the_secret_verifies() {
        let body = br#"{"resource":"attachmentActions"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(good.len(), 40);
        assert!(signature_ok(b"s3cret", body, Some(&good)));
        assert!(signature_ok(
            b"s3cret",
            body,
            Some(&good.to_ascii_uppercase())
        ));
        assert!(!signature_ok(b"other", body, Some(&good)));
        assert!(!signature_ok(b"s3cret", b"{}", Some(&good)));
        assert!(!signature_ok(b"s3cret", body, None));
        assert!(!signature_ok(b"s3cret", body, Some("")));
        assert!(!signature_ok(b"s3cret", body, Some(&good[..38])));
        assert!(!signature_ok(b"s3cret", body, Some("zz")));
    }
}
