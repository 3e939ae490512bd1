//! The XSOAR poller: an alert source that polls XSOAR's incident search
//! ([`crate::ingest::xsoar`]) and publishes one `AlertReceived` per new incident.
//!
//! Input: a poll every `xsoar.poll_s`, for incidents created at or after its cursor, page by
//! page. Output: `AlertReceived` on `soc.alerts`, deduplicated on `alert:xsoar-<id>` (an
//! incident seen again, at the cursor's edge or after a restart, adds nothing), and the cursor
//! (the newest `created` published) in the store's `source_cursors` once its page is accepted.
//!
//! A restart resumes from the stored cursor. XSOAR unreachable or answering an error: counted,
//! logged, retried at the next poll. A malformed incident is counted and skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sqlx::Row;

use crate::bus::{Bus, Commit, Outcome, Outgoing};
use crate::ingest::xsoar::{self, XsoarConfig};
use crate::proto::{AlertReceived, Event};
use crate::store::Store;

/// Actor name (prefixed by the runtime instance).
pub const NAME: &str = "xsoar";
/// `produced_by` and `received_via` of what it publishes.
pub const PRODUCER: &str = "source:xsoar";
/// Pages read per poll at most (the rest waits for the next poll).
const MAX_PAGES: u32 = 50;

/// Messages of the poller.
pub enum Msg {
    /// Poll, then schedule the next.
    Poll,
}

/// Startup arguments.
#[derive(Clone)]
pub struct Args {
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
}

/// The poller actor.
pub struct XsoarPoller;

/// Its state.
pub struct State {
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
        myself.send_message(Msg::Poll)?;
        Ok(State {
            client,
            store,
            args,
        })
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

impl State {
    async fn cursor(&self) -> Result<String, String> {
        let stored = sqlx::query("SELECT cursor FROM source_cursors WHERE source = ?")
            .bind(cursor_name(&self.args.config))
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| e.to_string())?;
        Ok(match stored {
            Some(row) => row.get(0),
            // Validated at startup; `now` only if it somehow is not a time.
            None => chrono::DateTime::parse_from_rfc3339(&self.args.config.start)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(|_| chrono::Utc::now())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }

    async fn save_cursor(&self, cursor: &str) -> Result<(), String> {
        sqlx::query(
            "INSERT INTO source_cursors (source, cursor, updated_ms) VALUES (?, ?, ?) \
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, \
             updated_ms = excluded.updated_ms",
        )
        .bind(cursor_name(&self.args.config))
        .bind(cursor)
        .bind(crate::proto::now_ms())
        .execute(self.store.pool())
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Reads every page from the cursor, publishes each, advances the cursor.
    async fn poll(&mut self) -> Result<(), String> {
        let config = &self.args.config;
        let from = self.cursor().await?;
        let mut newest = from.clone();
        for page in 0..MAX_PAGES {
            let incidents = self
                .client
                .search(&config.query, &from, page, config.page_size)
                .await?;
            let full = incidents.len() >= config.page_size as usize;
            let mut commits = Vec::with_capacity(incidents.len());
            for incident in &incidents {
                let alert = match xsoar::to_alert(incident, config.site.as_deref()) {
                    Ok(a) => a,
                    Err(e) => {
                        self.args.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "XSOAR incident skipped");
                        continue;
                    }
                };
                if let Some(created) = incident.get("created").and_then(|c| c.as_str())
                    && let Ok(t) = chrono::DateTime::parse_from_rfc3339(created)
                {
                    let created = t
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    if created > newest {
                        newest = created;
                    }
                }
                let ticket = alert.ticket_id.clone();
                let envelope = crate::telemetry::ingested(
                    PRODUCER,
                    &ticket,
                    Event::AlertReceived(AlertReceived {
                        alert,
                        received_via: PRODUCER.to_owned(),
                    }),
                );
                let out = Outgoing::event(&envelope).map_err(|e| e.to_string())?;
                commits.push(Commit::dedupe(format!("alert:{ticket}"), vec![out]));
            }
            if !commits.is_empty() {
                let outcomes = self
                    .args
                    .bus
                    .submit(commits)
                    .await
                    .map_err(|e| e.to_string())?;
                for outcome in outcomes {
                    let counter = match outcome {
                        Outcome::Applied => &self.args.stats.published,
                        _ => &self.args.stats.duplicates,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !full {
                break;
            }
        }
        // Saved after every poll, the first included: a cursor of `now` must not move on.
        self.save_cursor(&newest).await
    }
}
