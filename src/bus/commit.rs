//! What a consumer is given ([`Delivered`], with its [`AckRef`]) and what a role gives back: a
//! [`Commit`] of its outputs ([`Outgoing`]) fenced by its ack or a dedupe key, and each
//! commit's [`Outcome`].

use std::sync::Arc;

use serde::Serialize;

use super::error::BusError;
use super::wire::{Fields, MAX_FIELDS, StreamId, Topic};
use crate::proto::{self, Envelope};

/// An entry delivered to a consumer, with how many times it has been delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The entry id.
    pub id: StreamId,
    /// Its fields; `None` when the entry was trimmed away while pending.
    pub fields: Option<Arc<Fields>>,
    /// Delivery count, including this delivery.
    pub deliveries: u32,
}

/// Reference to a delivered entry, to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRef {
    /// The stream it was read from.
    pub topic: Topic,
    /// The consumer group that read it.
    pub group: Arc<str>,
    /// The entry id.
    pub id: StreamId,
}

/// One entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The stream to append to.
    pub topic: Topic,
    /// The entry's fields.
    pub fields: Fields,
    /// Whether to also append a copy to `soc.audit` (every domain message is audited).
    pub audit: bool,
}

impl Outgoing {
    /// A domain message: its topic follows from the event, and it is audited.
    pub fn event(envelope: &Envelope) -> Result<Outgoing, BusError> {
        Ok(Outgoing {
            topic: Topic::of(&envelope.event),
            fields: Fields::for_envelope(envelope)?,
            audit: true,
        })
    }
}

/// An atomic unit of work on the bus: optionally ack an input, optionally claim a dedupe key,
/// then append outputs (and their audit copies).
///
/// Applied all or nothing. A failed ack (the input was already acked) or a taken dedupe key
/// skips the outputs. Because of that fence, a commit can be retried after any failure without
/// duplicating its outputs; a commit with neither an ack nor a dedupe key cannot be built.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    ack: Option<AckRef>,
    dedupe_key: Option<String>,
    outputs: Vec<Outgoing>,
}

impl Commit {
    /// Acks `input` and appends `outputs`.
    pub fn ack(input: AckRef, outputs: Vec<Outgoing>) -> Commit {
        Commit {
            ack: Some(input),
            dedupe_key: None,
            outputs,
        }
    }

    /// Also claims `dedupe_key`: after the ack, the outputs are skipped if the key was seen
    /// before (within the dedupe TTL), so a copy of an input under another entry id is not
    /// worked twice.
    pub fn with_dedupe(mut self, dedupe_key: String) -> Commit {
        self.dedupe_key = Some(dedupe_key);
        self
    }

    /// Appends `outputs` unless `dedupe_key` was seen before (within the dedupe TTL).
    pub fn dedupe(dedupe_key: String, outputs: Vec<Outgoing>) -> Commit {
        Commit {
            ack: None,
            dedupe_key: Some(dedupe_key),
            outputs,
        }
    }

    /// Moves a delivered entry to `soc.dead` with the reason, and acks it. The entry's own
    /// fields are kept (at most [`MAX_FIELDS`] minus the dead-letter ones).
    pub(crate) fn dead_letter(input: AckRef, delivered: &Delivered, reason: &str) -> Commit {
        const DEAD_FIELDS: usize = 7;
        let original = delivered.fields.as_deref().cloned().unwrap_or_default();
        let truncated = original.len() > MAX_FIELDS - DEAD_FIELDS;
        let mut fields = Fields(
            original
                .0
                .into_iter()
                .take(MAX_FIELDS - DEAD_FIELDS)
                .collect(),
        );
        if truncated {
            fields.push("dead_truncated", "fields beyond the limit were dropped");
        }
        fields.push("dead_reason", reason.to_owned());
        fields.push("dead_from", input.topic.name());
        fields.push("dead_id", input.id.to_string());
        fields.push("dead_group", input.group.to_string());
        fields.push("dead_deliveries", delivered.deliveries.to_string());
        fields.push("dead_at_ms", proto::now_ms().to_string());
        Commit::ack(
            input,
            vec![Outgoing {
                topic: Topic::Dead,
                fields,
                audit: false,
            }],
        )
    }

    /// The input this commit acks.
    pub fn ack_ref(&self) -> Option<&AckRef> {
        self.ack.as_ref()
    }

    /// The dedupe key this commit claims.
    pub fn dedupe_key(&self) -> Option<&str> {
        self.dedupe_key.as_deref()
    }

    /// The entries this commit appends.
    pub fn outputs(&self) -> &[Outgoing] {
        &self.outputs
    }

    /// Checks what both backends require of every commit: each output has 1 to
    /// [`MAX_FIELDS`] fields.
    pub fn validate(&self) -> Result<(), BusError> {
        for out in &self.outputs {
            if out.fields.is_empty() || out.fields.len() > MAX_FIELDS {
                return Err(BusError::Invalid(format!(
                    "an entry for {} has {} fields (1 to {MAX_FIELDS} allowed)",
                    out.topic,
                    out.fields.len()
                )));
            }
        }
        Ok(())
    }

    /// The parts, by value (so a backend can move them instead of copying).
    pub(crate) fn into_parts(self) -> (Option<AckRef>, Option<String>, Vec<Outgoing>) {
        (self.ack, self.dedupe_key, self.outputs)
    }
}

/// What happened to one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Ack, outputs and audit copies were written.
    Applied,
    /// The dedupe key was already taken: nothing was written.
    Duplicate,
    /// The input had already been acked (by this or another consumer): nothing was written.
    AlreadyAcked,
}

/// Called once with the outcome of a submitted batch.
pub type CommitCallback = Box<dyn FnOnce(Result<Vec<Outcome>, BusError>) + Send>;
