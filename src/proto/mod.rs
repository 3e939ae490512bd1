//! The event contract: the envelope every bus message travels in, and the events of the SOC.
//!
//! The Rust types here are the source of truth. `proto/v1/` holds the JSON Schema generated from
//! them (a test fails on drift) and frozen MessagePack fixtures that every later build must still
//! decode. On the wire an envelope is *named* MessagePack (struct fields as map keys), so a
//! reader tolerates fields it does not know: inside a version, changes are additive only.
//!
//! Decoding is for untrusted bytes: [`decode`] returns an error for anything malformed and never
//! panics or allocates more than the input size (it reads from a bounded slice with a nesting
//! limit).

mod assessment;
mod case;
mod events;
mod reports;

pub use assessment::*;

/// The wire name of a unit enum value (`true_positive`, `SEV-2`, `approved`), for text and
/// pages; empty for anything that is not a plain string on the wire.
pub fn label<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
pub use case::*;
pub use events::*;
pub use reports::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the envelope and event schemas written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// Deepest MessagePack nesting [`decode`] accepts; our own events nest less than 8 levels.
const MAX_DECODE_DEPTH: usize = 64;

/// One message on the bus: an event plus who produced it, when, and which case it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Schema version of this envelope ([`SCHEMA_VERSION`] when written by this build).
    pub v: u16,
    /// Unique id of this message: a UUIDv7 string, so ids sort by creation time.
    pub id: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Role or component that produced the event (`sentinel`, `source:jsonl`, ...).
    pub produced_by: String,
    /// The ticket (or report id) this message belongs to; every event of a case shares it.
    pub correlation_id: String,
    /// Id of the envelope whose handling produced this one; `None` for events entering the SOC.
    #[serde(default)]
    pub causation_id: Option<String>,
    /// W3C trace context, so one incident is one trace across processes.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The event itself.
    pub event: Event,
}

impl Envelope {
    /// A new envelope for an event entering the SOC (no cause), starting a new trace.
    pub fn new_root(produced_by: &str, correlation_id: &str, event: Event) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            at_ms: now_ms(),
            produced_by: produced_by.to_owned(),
            correlation_id: correlation_id.to_owned(),
            causation_id: None,
            traceparent: Some(Traceparent::new_root().to_string()),
            event,
        }
    }

    /// A new envelope produced while handling `self`: same case, same trace, caused by `self`.
    pub fn caused(&self, produced_by: &str, event: Event) -> Self {
        let traceparent = self
            .traceparent
            .as_deref()
            .and_then(Traceparent::parse)
            .map(|parent| parent.child())
            .unwrap_or_else(Traceparent::new_root);
        Self {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            at_ms: now_ms(),
            produced_by: produced_by.to_owned(),
            correlation_id: self.correlation_id.clone(),
            causation_id: Some(self.id.clone()),
            traceparent: Some(traceparent.to_string()),
            event,
        }
    }
}

/// Encodes an envelope as named MessagePack.
///
/// The bytes come back in an allocation of their exact size. Encoding straight into a new
/// `Vec` would double it as it grows and hand back up to twice the bytes (about 40 % more on
/// average), and encoded events live long: the in-memory bus keeps its audit whole. So each
/// thread encodes into one reused buffer and copies the result out.
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
    /// A buffer grown past this (a huge event) is not kept for the next one.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        let written = rmp_serde::encode::write_named(buf, envelope).map_err(CodecError::Encode);
        let out = written.map(|()| buf.to_vec());
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        out
    })
}

/// Decodes untrusted bytes into an envelope.
///
/// Unknown fields are ignored (a newer producer may add them); anything else that does not fit
/// the contract is an error. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_DECODE_DEPTH);
    let envelope = Envelope::deserialize(&mut de).map_err(CodecError::Decode)?;
    if envelope.v == 0 || envelope.v > SCHEMA_VERSION {
        return Err(CodecError::UnsupportedVersion(envelope.v));
    }
    Ok(envelope)
}

/// The JSON Schema of the envelope (and so of every event), as written to `proto/v1/`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Envelope)).unwrap_or_default()
}

/// A W3C `traceparent` header value: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    /// 128-bit trace id shared by every event of one incident.
    pub trace_id: u128,
    /// 64-bit id of the span that produced the event.
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl Traceparent {
    /// A fresh, sampled trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            flags: 1,
        }
    }

    /// The same trace with a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: fastrand::u64(1..),
            ..*self
        }
    }

    /// Parses a version-00 header; `None` for anything malformed or all-zero ids.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }
}

impl std::fmt::Display for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Errors of the MessagePack codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not an envelope of this contract.
    #[error("undecodable envelope: {0}")]
    Decode(#[source] rmp_serde::decode::Error),
    /// The envelope could not be encoded (a bug: our types always encode).
    #[error("cannot encode envelope: {0}")]
    Encode(#[source] rmp_serde::encode::Error),
    /// The envelope declares a schema version this build does not know.
    #[error("unsupported envelope version {0} (this build reads 1..={SCHEMA_VERSION})")]
    UnsupportedVersion(u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_share_the_trace() {
        let root = Traceparent::new_root();
        let text = root.to_string();
        assert_eq!(text.len(), 55);
        assert_eq!(Traceparent::parse(&text), Some(root));
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }

    #[test]
    fn traceparent_rejects_malformed_headers() {
        for bad in [
            "",
            "00-abc-def-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert_eq!(Traceparent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn caused_envelopes_keep_case_and_trace() {
        let root = Envelope::new_root(
            "source:test",
            "t-1",
            Event::ShiftSummary(ShiftSummary::default()),
        );
        let child = root.caused("sentinel", Event::ShiftSummary(ShiftSummary::default()));
        assert_eq!(child.correlation_id, "t-1");
        assert_eq!(child.causation_id.as_deref(), Some(root.id.as_str()));
        let trace = |e: &Envelope| Traceparent::parse(e.traceparent.as_deref().unwrap_or(""));
        assert_eq!(
            trace(&child).map(|t| t.trace_id),
            trace(&root).map(|t| t.trace_id)
        );
    }

    #[test]
    fn decode_rejects_future_versions() {
        let mut env = Envelope::new_root("x", "t", Event::ShiftSummary(ShiftSummary::default()));
        env.v = SCHEMA_VERSION + 1;
        let bytes = encode(&env).unwrap();
        assert!(matches!(
            decode(&bytes),
            Err(CodecError::UnsupportedVersion(_))
        ));
    }
}
