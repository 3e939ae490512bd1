//! The notifier: posts the queued Webex cards, one per IR plan ([`crate::webex`]).
//!
//! Input: a poll every `webex.poll_ms`. Output: Webex messages, and each card's delivery
//! (sent, retrying, failed, expired) in the store's `cards`. It runs only when a room and a
//! bot token are configured. Roles never wait for it: a slow or failing Webex delays cards,
//! never cases.
//!
//! A restart loses nothing: the queue is in the store; a card whose send was cut off is
//! still queued and is sent again (Webex may then show it twice: at least once, never lost).

use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::store::Store;
use crate::webex::{self, WebexConfig};

/// Actor name (prefixed by the runtime instance).
pub(crate) const NAME: &str = "notifier";

/// Cards sent per poll at most.
const BATCH: usize = 20;

/// Messages of the notifier.
pub(crate) enum Msg {
    /// Send what is due, then poll again after `poll_ms`.
    Poll,
}

/// Startup arguments.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// The store file holding the card queue.
    pub path: PathBuf,
    /// Webex settings (room, token, retries).
    pub config: WebexConfig,
    /// Base URL of the approval pages, for the cards' buttons.
    pub approvals_url: String,
    /// A card older than this (its proposals expired) is not sent, ms.
    pub max_age_ms: i64,
}

/// The notifier actor.
pub(crate) struct Notifier;

/// Its state.
pub(crate) struct State {
    store: Store,
    client: webex::Client,
    args: Args,
}

impl Actor for Notifier {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let store = Store::open(&args.path).await?;
        let client = webex::Client::new(&args.config)?.ok_or("no Webex bot token")?;
        myself.send_message(Msg::Poll)?;
        Ok(State {
            store,
            client,
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
                let a = &state.args;
                let sent = webex::send_due(
                    state.store.pool(),
                    &state.client,
                    &a.config,
                    &a.approvals_url,
                    a.max_age_ms,
                    BATCH,
                    crate::proto::now_ms(),
                )
                .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "reading the card queue failed; retrying");
                }
                // Polled after each pass (not on a fixed interval): slow sends never pile up
                // polls in the mailbox.
                myself.send_after(Duration::from_millis(a.config.poll_ms), || Msg::Poll);
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
