//! Logs and traces: one incident is one OpenTelemetry trace, exported over OTLP/HTTP.
//!
//! The ingestion span starts an incident's trace; its W3C `traceparent` rides in every
//! envelope ([`crate::proto::Envelope::traceparent`]), across Redis and across processes. Each
//! role's handling of an envelope is a span whose parent is that traceparent
//! (`with_parent`), and the envelopes it publishes carry the handling span's own context
//! (`current_traceparent`). Model calls (`chat`, with GenAI semantic-convention
//! attributes: the model in `gen_ai.response.model`) and tool calls (`execute_tool <name>`) are spans inside the role's.
//!
//! The exporter runs a batch processor on its own thread: spans are queued and dropped when
//! the queue is full, so a collector that is down or slow never blocks or crashes the
//! runtime; its errors are logged by the exporter. The endpoint comes from
//! `SOC_OTLP_ENDPOINT`, the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces`), or `[telemetry] otlp_endpoint`; none: no
//! export, logs only.
//!
//! A crash loses the spans still queued for export (at most the last half second or so); the
//! trace context itself is in the envelopes, so work redone after a restart joins its
//! incident's trace.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::proto::Traceparent;

/// `[telemetry]`: where traces go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces` (Jaeger accepts it);
    /// empty: no traces.
    pub otlp_endpoint: String,
}

/// The traces endpoint: `SOC_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, then the config's; `None` when all are empty.
pub fn endpoint(var: impl Fn(&str) -> Option<String>, config: &TelemetryConfig) -> Option<String> {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    set(var("SOC_OTLP_ENDPOINT"))
        .or_else(|| set(var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")))
        .or_else(|| {
            set(var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        })
        .or_else(|| set(Some(config.otlp_endpoint.clone())))
}

/// The installed logging and tracing; [`Telemetry::shutdown`] flushes the spans still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (for journald, files and log shippers).
    Json,
}

/// Telemetry errors.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error(
        "SOC_LOG (or RUST_LOG) {filter:?} is not a log filter: {reason}; use a level (`info`, \
         `warn`) or per-module directives such as `info,soc_runtime::bus=debug`"
    )]
    Filter {
        /// The filter given.
        filter: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// Installs the global subscriber: logs to stderr filtered by `log_filter` in `format`
/// (colour only when stderr is a terminal), and, with an endpoint, this crate's spans exported
/// over OTLP/HTTP (protobuf). A filter that does not parse is an error, not a silent `info`.
pub fn init(
    log_filter: &str,
    format: LogFormat,
    endpoint: Option<&str>,
) -> Result<Telemetry, TelemetryError> {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(log_filter)
        .map_err(|e| TelemetryError::Filter {
            filter: log_filter.to_owned(),
            reason: e.to_string(),
        })?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt.json().with_ansi(false).with_filter(filter).boxed(),
    };
    let provider = endpoint.and_then(|endpoint| match provider(endpoint) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: traces are off: cannot export to {endpoint}: {e}");
            None
        }
    });
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("soc-runtime"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("soc_runtime", tracing::Level::INFO),
            )
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}

fn provider(endpoint: &str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(3))
        .build()?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let instance = format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name("soc-runtime")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    instance,
                ))
                .build(),
        )
        .build())
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued (up to a few seconds) and stops the exporter. Blocking: call it
    /// outside the async runtime.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.force_flush() {
                eprintln!("warning: some spans were not exported: {e}");
            }
            let _ = p.shutdown_with_timeout(Duration::from_secs(3));
        }
    }
}

/// The envelope of an alert entering the SOC, started in its own `ingest` span: the root of
/// the incident's trace (with traces off, a fresh random traceparent).
pub(crate) fn ingested(
    producer: &str,
    ticket: &str,
    event: crate::proto::Event,
) -> crate::proto::Envelope {
    let span =
        tracing::info_span!("ingest", otel.name = "ingest", ticket = %ticket, source = producer);
    let _entered = span.enter();
    let mut envelope = crate::proto::Envelope::new_root(producer, ticket, event);
    if let Some(tp) = current_traceparent() {
        envelope.traceparent = Some(tp);
    }
    envelope
}

/// Makes the envelope's `traceparent` the parent of `span` (call before entering it). Without
/// a valid traceparent, or with traces off, the span stays a root.
pub(crate) fn with_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent.and_then(Traceparent::parse) else {
        return;
    };
    let context = SpanContext::new(
        TraceId::from(tp.trace_id),
        SpanId::from(tp.span_id),
        TraceFlags::new(tp.flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}

/// The current span's context as a `traceparent`, when spans are exported.
pub(crate) fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        Traceparent {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        }
        .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_follows_the_documented_precedence() {
        let config = TelemetryConfig {
            otlp_endpoint: "http://config:4318/v1/traces".into(),
        };
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            endpoint(
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318/")]),
                &config
            )
            .as_deref(),
            Some("http://otel:4318/v1/traces")
        );
        assert_eq!(
            endpoint(
                env(&[
                    ("SOC_OTLP_ENDPOINT", "http://soc/v1/traces"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318")
                ]),
                &config
            )
            .as_deref(),
            Some("http://soc/v1/traces")
        );
        assert_eq!(
            endpoint(env(&[]), &config).as_deref(),
            Some("http://config:4318/v1/traces")
        );
        assert_eq!(endpoint(env(&[]), &TelemetryConfig::default()), None);
    }
}
