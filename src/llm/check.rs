//! `soc-runtime llm check`: each endpoint's health, model list and a one-line completion,
//! straight to the endpoint (no gateway, no failover), so an operator sees every box as it is.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::client::Endpoint;
use super::{AttemptError, ChatRequest, EndpointConfig, Message};
use crate::secret::redact_url;

/// Why one step of a check failed, as `llm check` prints it (and writes it in `--json`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// The step was not reached.
    #[error("not checked")]
    NotChecked,
    /// The endpoint could not be set up.
    #[error("{0}")]
    Setup(AttemptError),
    /// The model list could not be read.
    #[error("{}", .0.message)]
    Models(AttemptError),
    /// The completion failed.
    #[error("{}: {}", .0.kind, .0.message)]
    Completion(AttemptError),
}

impl Serialize for CheckFailure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What one endpoint answered.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointCheck {
    /// Name.
    pub name: String,
    /// URL (without credentials).
    pub url: String,
    /// The model list, or why it could not be read.
    pub models: Result<Vec<String>, CheckFailure>,
    /// Time to list the models, ms.
    pub models_ms: f64,
    /// The completion's text, or why there was none.
    pub completion: Result<String, CheckFailure>,
    /// Time to complete, ms.
    pub completion_ms: f64,
    /// Tokens in/out of the completion.
    pub tokens: (u64, u64),
}

impl EndpointCheck {
    /// Whether the endpoint listed its models and answered.
    pub fn is_healthy(&self) -> bool {
        self.models.is_ok() && self.completion.is_ok()
    }
}

impl fmt::Display for EndpointCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let health = if self.is_healthy() {
            "healthy"
        } else {
            "UNHEALTHY"
        };
        writeln!(f, "{} ({}): {health}", self.name, self.url)?;
        match &self.models {
            Ok(models) => writeln!(
                f,
                "  models ({:.0} ms): {}",
                self.models_ms,
                models.join(", ")
            )?,
            Err(e) => writeln!(f, "  models: FAILED: {e}")?,
        }
        match &self.completion {
            Ok(text) => writeln!(
                f,
                "  completion ({:.0} ms, {} tokens in, {} out): {text}",
                self.completion_ms, self.tokens.0, self.tokens.1
            ),
            Err(e) => writeln!(f, "  completion: FAILED: {e}"),
        }
    }
}

/// Checks one endpoint.
pub async fn check(config: &EndpointConfig) -> EndpointCheck {
    let mut out = EndpointCheck {
        name: config.name.clone(),
        url: redact_url(&config.url),
        models: Err(CheckFailure::NotChecked),
        models_ms: 0.0,
        completion: Err(CheckFailure::NotChecked),
        completion_ms: 0.0,
        tokens: (0, 0),
    };
    let endpoint = match Endpoint::new(config.clone()) {
        Ok(e) => e,
        Err(e) => {
            out.models = Err(CheckFailure::Setup(e));
            return out;
        }
    };
    let started = Instant::now();
    out.models = endpoint.models().await.map_err(CheckFailure::Models);
    out.models_ms = started.elapsed().as_secs_f64() * 1e3;
    let request = ChatRequest {
        messages: vec![Message::user(
            "Reply with one short sentence: are you ready?",
        )],
        max_tokens: Some(24),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    let started = Instant::now();
    let until = started + Duration::from_millis(config.timeout_ms);
    match endpoint.chat(&request, until).await {
        Ok(answer) => {
            let text = answer.content.unwrap_or_default();
            out.completion = Ok(text.split_whitespace().collect::<Vec<_>>().join(" "));
            out.tokens = (answer.usage.prompt_tokens, answer.usage.completion_tokens);
        }
        Err(e) => out.completion = Err(CheckFailure::Completion(e)),
    }
    out.completion_ms = started.elapsed().as_secs_f64() * 1e3;
    out
}
