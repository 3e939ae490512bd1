//! The wire: the SOC's streams ([`Topic`]), entry ids ([`StreamId`]) and the plain fields an
//! entry carries ([`Fields`]), with their decoding into an envelope.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::BusError;
use crate::proto::{self, Envelope, Event};

/// The streams of the SOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// `soc.alerts`: alerts entering the SOC.
    #[serde(rename = "soc.alerts")]
    Alerts,
    /// `soc.triage`: sentinel's verdicts.
    #[serde(rename = "soc.triage")]
    Triage,
    /// `soc.cases`: tier 2 analyses, escalations and IR plans.
    #[serde(rename = "soc.cases")]
    Cases,
    /// `soc.actions`: proposals and human decisions.
    #[serde(rename = "soc.actions")]
    Actions,
    /// `soc.reports`: intel and windowed reports.
    #[serde(rename = "soc.reports")]
    Reports,
    /// `soc.audit`: a copy of every domain message, in commit order.
    #[serde(rename = "soc.audit")]
    Audit,
    /// `soc.dead`: entries that could not be processed, with the reason.
    #[serde(rename = "soc.dead")]
    Dead,
}

impl Topic {
    /// Every stream, in a fixed order.
    pub(crate) const ALL: [Topic; 7] = [
        Topic::Alerts,
        Topic::Triage,
        Topic::Cases,
        Topic::Actions,
        Topic::Reports,
        Topic::Audit,
        Topic::Dead,
    ];

    /// The stream name (`soc.alerts`, ...), before any namespace prefix.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Alerts => "soc.alerts",
            Topic::Triage => "soc.triage",
            Topic::Cases => "soc.cases",
            Topic::Actions => "soc.actions",
            Topic::Reports => "soc.reports",
            Topic::Audit => "soc.audit",
            Topic::Dead => "soc.dead",
        }
    }

    /// Position in `Topic::ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The topic an event is published to.
    pub fn of(event: &Event) -> Topic {
        match event {
            Event::AlertReceived(_) | Event::CaseUpdated(_) => Topic::Alerts,
            Event::AlertTriaged(_) => Topic::Triage,
            Event::CaseEscalated(_) | Event::Tier2Analysis(_) | Event::IrPlan(_) => Topic::Cases,
            Event::ActionProposed(_) | Event::ActionDecision(_) | Event::DispositionRecorded(_) => {
                Topic::Actions
            }
            Event::ThreatIntelReport(_)
            | Event::DetectionTuningReport(_)
            | Event::HuntingReport(_)
            | Event::CampaignDetected(_)
            | Event::ShiftSummary(_) => Topic::Reports,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topic {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| BusError::Config(format!("unknown stream `{s}`")))
    }
}

/// A stream entry id: milliseconds and a sequence number, as Redis writes them (`1700000000000-0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The smallest id (`0-0`).
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    /// The largest id.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The id right after this one.
    pub fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BusError::Protocol(format!("bad stream id `{s}`"));
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(StreamId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Field name of the schema version.
pub const F_V: &str = "v";
/// Field name of the event kind.
pub const F_KIND: &str = "kind";
/// Field name of the envelope id.
pub const F_ID: &str = "id";
/// Field name of the correlation id (the ticket).
pub const F_CORR: &str = "corr";
/// Field name of the MessagePack-encoded envelope.
pub const F_DATA: &str = "data";
/// Most fields an appended entry may have (Lua's `unpack` and sanity both want a bound).
pub const MAX_FIELDS: usize = 256;
/// Audit entries only: the topic the message was published to.
pub const F_TOPIC: &str = "topic";
/// Audit entries only: the entry id in that topic.
pub const F_TOPIC_ID: &str = "topic_id";

/// The fields of one stream entry, in order. Values are binary-safe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub(super) Vec<(Cow<'static, str>, Bytes)>);

impl Fields {
    /// Fields for a domain message: `v`, `kind`, `id`, `corr`, `data`.
    pub(crate) fn for_envelope(envelope: &Envelope) -> Result<Fields, BusError> {
        let data = proto::encode(envelope).map_err(|e| BusError::Protocol(e.to_string()))?;
        Ok(Fields(vec![
            (Cow::Borrowed(F_V), Bytes::from(envelope.v.to_string())),
            (
                Cow::Borrowed(F_KIND),
                Bytes::from_static(envelope.event.kind().as_bytes()),
            ),
            (Cow::Borrowed(F_ID), Bytes::from(envelope.id.clone())),
            (
                Cow::Borrowed(F_CORR),
                Bytes::from(envelope.correlation_id.clone()),
            ),
            (Cow::Borrowed(F_DATA), Bytes::from(data)),
        ]))
    }

    /// Builds fields from name/value pairs (for raw writes and parsing).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Fields
    where
        N: Into<Cow<'static, str>>,
        V: Into<Bytes>,
    {
        Fields(
            pairs
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }

    /// The value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of a field as UTF-8 text, if present and valid.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) {
        self.0.push((name.into(), value.into()));
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v))
    }

    /// Whether these are exactly the fields of a domain message, in order:
    /// `v`, `kind`, `id`, `corr`, `data`.
    pub(crate) fn is_domain_message(&self) -> bool {
        self.0.len() == 5
            && self
                .0
                .iter()
                .zip([F_V, F_KIND, F_ID, F_CORR, F_DATA])
                .all(|((name, _), expected)| name == expected)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the envelope in `data`, checking it agrees with the plain fields.
    ///
    /// The plain `v` field must be present, name a schema version this build reads and agree
    /// with the envelope's own: an entry from the future, or written by hand without a version,
    /// is not read as if it were today's.
    pub fn decode_envelope(&self) -> Result<Envelope, DecodeError> {
        self.decode_envelope_with(proto::decode)
    }

    /// [`Fields::decode_envelope`], leaving an assessment's evidence lists empty (see
    /// [`proto::decode_without_evidence`]): for a fold that keeps no case timelines.
    pub(crate) fn decode_envelope_without_evidence(&self) -> Result<Envelope, DecodeError> {
        self.decode_envelope_with(proto::decode_without_evidence)
    }

    fn decode_envelope_with(
        &self,
        decode: fn(&[u8]) -> Result<Envelope, proto::CodecError>,
    ) -> Result<Envelope, DecodeError> {
        let data = self.get(F_DATA).ok_or(DecodeError::NoData)?;
        let v = self.get(F_V).ok_or(DecodeError::NoVersion)?;
        let v = std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|v| (1..=proto::SCHEMA_VERSION).contains(v))
            .ok_or_else(|| {
                DecodeError::UnsupportedVersion(
                    String::from_utf8_lossy(v).chars().take(16).collect(),
                )
            })?;
        let envelope = decode(data)?;
        if envelope.v != v {
            return Err(DecodeError::VersionMismatch {
                entry: v,
                envelope: envelope.v,
            });
        }
        if let Some(kind) = self.get_str(F_KIND)
            && kind != envelope.event.kind()
        {
            return Err(DecodeError::KindMismatch {
                entry: kind.chars().take(64).collect(),
                envelope: envelope.event.kind(),
            });
        }
        Ok(envelope)
    }
}

/// Why an entry's envelope cannot be decoded (the dead-letter reason).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No `data` field.
    #[error("entry has no `data` field")]
    NoData,
    /// No `v` field.
    #[error("entry has no `v` (schema version) field")]
    NoVersion,
    /// A `v` this build does not read.
    #[error("unsupported schema version `{0}` (this build reads 1 to {max})", max = proto::SCHEMA_VERSION)]
    UnsupportedVersion(String),
    /// The plain `v` field and the envelope disagree.
    #[error("entry version {entry} does not match its envelope's {envelope}")]
    VersionMismatch {
        /// The entry's `v` field.
        entry: u16,
        /// The envelope's `v`.
        envelope: u16,
    },
    /// `data` is not an envelope.
    #[error(transparent)]
    Codec(#[from] proto::CodecError),
    /// The plain `kind` field and the envelope disagree.
    #[error("entry kind `{entry}` does not match its envelope's `{envelope}`")]
    KindMismatch {
        /// The entry's `kind` field.
        entry: String,
        /// The envelope's event kind.
        envelope: &'static str,
    },
}

/// One entry read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry id.
    pub id: StreamId,
    /// Its fields.
    pub fields: Arc<Fields>,
}
