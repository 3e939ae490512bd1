//! The XSOAR poller: an alert source that polls XSOAR's incident search
//! ([`crate::ingest::xsoar`]) and publishes one `AlertReceived` per new incident.
//!
//! Input: a poll every `xsoar.poll_s`, for incidents created at or after its cursor, page by
//! page. Output: `AlertReceived` on `soc.alerts`, deduplicated on `alert:xsoar-<id>` (an
//! incident seen again, at the cursor's edge or after a restart, adds nothing), and the cursor
//! (the newest `created` published) in the store's `source_cursors` once its page is accepted.
//!
//! With `write_notes`, each poll also writes the due war-room notes (`POST /entry`): the
//! triage and the IR plan of each XSOAR incident, queued by the projector's fold in the
//! store's `xsoar_notes`, retried with backoff when XSOAR refuses.
//!
//! With `learn_closures`, each poll also reads the incidents closed since its closure cursor
//! and publishes, for each closed with a configured reason, a `DispositionRecorded` on
//! `soc.actions` (known at its close time; deduplicated on the incident and close time), so
//! every process's reasoner learns from the analysts' closures.
//!
//! A restart resumes from the stored cursors. XSOAR unreachable or answering an error: counted,
//! logged, retried at the next poll. A malformed incident is counted and skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sqlx::Row;

use crate::bus::{Bus, BusError, Commit, Outcome, Outgoing};
use crate::ingest::xsoar::{self, XsoarConfig, XsoarError};
use crate::proto::{AlertReceived, Event};
use crate::store::Store;

/// Actor name (prefixed by the runtime instance).
pub(crate) const NAME: &str = "xsoar";
/// `produced_by` and `received_via` of what it publishes.
pub(crate) const PRODUCER: &str = "source:xsoar";
/// Pages read per poll at most (the rest waits for the next poll).
const MAX_PAGES: u32 = 50;

/// Messages of the poller.
pub(crate) enum Msg {
    /// Poll, then schedule the next.
    Poll,
}

/// Startup arguments.
#[derive(Clone)]
pub(crate) struct Args {
    /// `[xsoar]`.
    pub config: XsoarConfig,
    /// The bus.
    pub bus: Bus,
    /// The store holding the cursor.
    pub store: PathBuf,
    /// Counters, shared across restarts.
    pub stats: Arc<XsoarStats>,
}

/// Counters of the poller.
#[derive(Debug, Default)]
pub struct XsoarStats {
    /// Incidents published as new alerts.
    pub published: AtomicU64,
    /// Incidents seen again (already published).
    pub duplicates: AtomicU64,
    /// Incidents that could not be mapped.
    pub malformed: AtomicU64,
    /// Polls that failed (XSOAR or the bus unreachable).
    pub errors: AtomicU64,
    /// War-room notes written.
    pub notes: AtomicU64,
    /// Closures published as analysts' dispositions.
    pub dispositions: AtomicU64,
    /// Closures whose reason teaches nothing (not in either list).
    pub closures_unmapped: AtomicU64,
}

/// The poller actor.
pub(crate) struct XsoarPoller;

/// Its state.
pub(crate) struct State {
    client: xsoar::Client,
    store: Store,
    args: Args,
}

impl Actor for XsoarPoller {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let client = xsoar::Client::new(&args.config)?.ok_or("XSOAR is not configured")?;
        let store = Store::open(&args.store).await?;
        let state = State {
            client,
            store,
            args,
        };
        // The first start's cursor is kept at once: incidents created while XSOAR is still
        // unreachable are not skipped by a later `now`.
        let cursor = state.cursor().await?;
        state.save_cursor(&cursor).await?;
        myself.send_message(Msg::Poll)?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Poll => {
                if let Err(e) = state.poll().await {
                    state.args.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "polling XSOAR failed; retrying at the next poll");
                }
                if state.args.config.learn_closures
                    && let Err(e) = state.poll_closures().await
                {
                    state.args.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "reading XSOAR closures failed; retrying at the next poll");
                }
                if state.args.config.write_notes
                    && let Err(e) = state.write_notes().await
                {
                    tracing::warn!(error = %e, "reading the XSOAR note queue failed");
                }
                myself.send_after(Duration::from_secs(state.args.config.poll_s), || Msg::Poll);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.store.close().await;
        Ok(())
    }
}

/// The cursor's name in `source_cursors`.
fn cursor_name(config: &XsoarConfig) -> String {
    format!("xsoar:{}", config.url.trim_end_matches('/'))
}

/// Why a poll (or a note round) stopped; the next poll retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    /// XSOAR did not answer well.
    #[error(transparent)]
    Xsoar(#[from] XsoarError),
    /// The store (cursors, the note queue) failed.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// The bus refused the publish.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl State {
    async fn cursor(&self) -> Result<String, PollError> {
        self.cursor_of(&cursor_name(&self.args.config)).await
    }

    async fn cursor_of(&self, name: &str) -> Result<String, PollError> {
        let stored = sqlx::query("SELECT cursor FROM source_cursors WHERE source = ?")
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(match stored {
            Some(row) => row.get(0),
            // Validated at startup; `now` only if it somehow is not a time.
            None => chrono::DateTime::parse_from_rfc3339(&self.args.config.start)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(|_| chrono::Utc::now())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }

    async fn save_cursor(&self, cursor: &str) -> Result<(), PollError> {
        self.save_cursor_of(&cursor_name(&self.args.config), cursor)
            .await
    }

    async fn save_cursor_of(&self, name: &str, cursor: &str) -> Result<(), PollError> {
        sqlx::query(
            "INSERT INTO source_cursors (source, cursor, updated_ms) VALUES (?, ?, ?) \
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, \
             updated_ms = excluded.updated_ms",
        )
        .bind(name)
        .bind(cursor)
        .bind(crate::proto::now_ms())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Writes the due war-room notes, oldest first; a failed one is retried with backoff
    /// (doubling from 2 s to 5 min), then given up after 10 attempts.
    async fn write_notes(&mut self) -> Result<(), PollError> {
        let now = crate::proto::now_ms();
        let rows = sqlx::query(
            "SELECT note_id, incident, body, attempts FROM xsoar_notes WHERE status = 'queued' \
             AND next_attempt_ms <= ? ORDER BY next_attempt_ms LIMIT 20",
        )
        .bind(now)
        .fetch_all(self.store.pool())
        .await?;
        for row in rows {
            let note_id: String = row.get(0);
            let attempts = row.get::<i64, _>(3).saturating_add(1);
            let sent = self
                .client
                .add_entry(&row.get::<String, _>(1), &row.get::<String, _>(2))
                .await;
            let (status, next, error) = match sent {
                Ok(()) => {
                    self.args.stats.notes.fetch_add(1, Ordering::Relaxed);
                    ("sent", now, None)
                }
                Err(e) if attempts < 10 => {
                    let delay_ms = (2_000i64 << (attempts - 1).min(8)).min(300_000);
                    tracing::warn!(note = %note_id, attempts, error = %e, "war-room note not written; retrying");
                    ("queued", now + delay_ms, Some(e.to_string()))
                }
                Err(e) => {
                    tracing::error!(note = %note_id, attempts, error = %e, "war-room note given up");
                    ("failed", now, Some(e.to_string()))
                }
            };
            sqlx::query(
                "UPDATE xsoar_notes SET status = ?, attempts = ?, next_attempt_ms = ?, \
                 last_error = ? WHERE note_id = ?",
            )
            .bind(status)
            .bind(attempts)
            .bind(next)
            .bind(error)
            .bind(&note_id)
            .execute(self.store.pool())
            .await?;
        }
        Ok(())
    }

    /// Reads the incidents closed since the closure cursor, page by page, and publishes the
    /// analysts' disposition of each closed with a configured reason; moves the cursor to the
    /// latest close time after each page (pages of one instant move on by page number).
    async fn poll_closures(&mut self) -> Result<(), PollError> {
        let config = self.args.config.clone();
        let name = format!("{}:closures", cursor_name(&config));
        let mut from = self.cursor_of(&name).await?;
        let mut page = 0;
        for _ in 0..MAX_PAGES {
            let incidents = self
                .client
                .search_closed(&from, page, config.page_size)
                .await?;
            let full = incidents.len() >= config.page_size as usize;
            let mut newest = from.clone();
            let mut commits = Vec::new();
            for incident in &incidents {
                let Some(closed) = xsoar::closed_at(incident) else {
                    self.args.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if closed > newest {
                    newest.clone_from(&closed);
                }
                let alert = match xsoar::to_alert(incident, config.site.as_deref()) {
                    Ok(a) => a,
                    Err(e) => {
                        self.args.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "XSOAR closure skipped");
                        continue;
                    }
                };
                let Some(disposition) = xsoar::disposition_of(incident, &config) else {
                    self.args
                        .stats
                        .closures_unmapped
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(ticket = %alert.ticket_id, "XSOAR close reason teaches nothing (not in escalate_close_reasons or benign_close_reasons)");
                    continue;
                };
                let known_at_ms = chrono::DateTime::parse_from_rfc3339(&closed)
                    .map(|t| t.timestamp_millis())
                    .unwrap_or_else(|_| crate::proto::now_ms());
                let ticket = alert.ticket_id.clone();
                let envelope = crate::proto::Envelope::new_root(
                    PRODUCER,
                    &ticket,
                    Event::DispositionRecorded(crate::proto::DispositionRecorded {
                        case: crate::proto::CaseContext::from_alert(&alert, ""),
                        disposition,
                        by: incident
                            .get("owner")
                            .and_then(|o| o.as_str())
                            .filter(|o| !o.is_empty())
                            .unwrap_or("xsoar")
                            .chars()
                            .take(256)
                            .collect(),
                        origin: "xsoar".into(),
                        known_at_ms,
                        reason: incident
                            .get("closeNotes")
                            .and_then(|n| n.as_str())
                            .map(|n| n.chars().take(2000).collect()),
                    }),
                );
                let out = Outgoing::event(&envelope)?;
                commits.push(Commit::dedupe(
                    format!("disposition:{ticket}:{closed}"),
                    vec![out],
                ));
            }
            if !commits.is_empty() {
                for outcome in self.args.bus.submit(commits).await? {
                    if outcome == Outcome::Applied {
                        self.args.stats.dispositions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.save_cursor_of(&name, &newest).await?;
            if !full {
                break;
            }
            if newest == from {
                page += 1;
            } else {
                from = newest;
                page = 0;
            }
        }
        Ok(())
    }

    /// Reads from the cursor page by page, publishes each incident, and moves the cursor to the
    /// newest incident time seen after each page. Every page is asked from the moved cursor
    /// (not by offset: incidents closed or indexed late would shift the pages); incidents at
    /// the cursor's edge come again and are deduplicated. Only a full page of one instant
    /// moves on by page number.
    async fn poll(&mut self) -> Result<(), PollError> {
        let config = self.args.config.clone();
        let mut from = self.cursor().await?;
        let mut page = 0;
        for _ in 0..MAX_PAGES {
            let incidents = self
                .client
                .search(&config.query, &from, page, config.page_size)
                .await?;
            let full = incidents.len() >= config.page_size as usize;
            let mut newest = from.clone();
            let mut commits = Vec::with_capacity(incidents.len());
            for incident in &incidents {
                // The cursor moves past malformed incidents too, so they cannot stall it.
                if let Some(created) = incident
                    .get("created")
                    .and_then(|c| c.as_str())
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                {
                    let created = created
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    if created > newest {
                        newest = created;
                    }
                }
                let alert = match xsoar::to_alert(incident, config.site.as_deref()) {
                    Ok(a) => a,
                    Err(e) => {
                        self.args.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "XSOAR incident skipped");
                        continue;
                    }
                };
                let ticket = alert.ticket_id.clone();
                let envelope = crate::telemetry::ingested(
                    PRODUCER,
                    &ticket,
                    Event::AlertReceived(AlertReceived {
                        alert,
                        received_via: PRODUCER.to_owned(),
                    }),
                );
                let out = Outgoing::event(&envelope)?;
                commits.push(Commit::dedupe(format!("alert:{ticket}"), vec![out]));
            }
            if !commits.is_empty() {
                let outcomes = self.args.bus.submit(commits).await?;
                for outcome in outcomes {
                    let counter = match outcome {
                        Outcome::Applied => &self.args.stats.published,
                        _ => &self.args.stats.duplicates,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Published: the cursor may move.
            self.save_cursor(&newest).await?;
            if !full {
                break;
            }
            if newest == from {
                page += 1;
            } else {
                from = newest;
                page = 0;
            }
        }
        Ok(())
    }
}
