//! `soc-runtime llm check`: each endpoint as it is, asked directly (no gateway, no failover):
//! its model list and whether the configured model is on it, a one-line completion, and the
//! features the roles rely on, tried for real with the endpoint's profile and quirks: a tool
//! call (offered under an internal dotted name, so the wire mapping is exercised) and a
//! JSON-Schema answer. It prints what it found, reasoning included, so an operator sees
//! before a shift whether this model on this server can do the SOC's work.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::client::Endpoint;
use super::{AttemptError, ChatRequest, EndpointConfig, JsonSchema, Message, Tool, ToolChoice};
use crate::secret::redact_url;

/// The tool offered by the check (dotted, as the roles' tools are).
const CHECK_TOOL: &str = "soc.echo_host";

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
    /// A request failed.
    #[error("{}: {}", .0.kind, .0.message)]
    Completion(AttemptError),
    /// The server answered, but not what the feature needs.
    #[error("{0}")]
    Feature(String),
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
    /// The configured model.
    pub model: String,
    /// The profile, thinking setting and reasoning budget it is checked with.
    pub profile: String,
    /// The model list, or why it could not be read.
    pub models: Result<Vec<String>, CheckFailure>,
    /// Whether the configured model is on the list (`None`: the list could not be read).
    pub model_listed: Option<bool>,
    /// Time to list the models, ms.
    pub models_ms: f64,
    /// The completion's text, or why there was none.
    pub completion: Result<String, CheckFailure>,
    /// Time to complete, ms.
    pub completion_ms: f64,
    /// Tokens in/out of the completion.
    pub tokens: (u64, u64),
    /// The tool call the model made when offered a tool, or why it made none.
    pub tools: Result<String, CheckFailure>,
    /// The JSON-Schema answer, or why it did not follow the schema.
    pub schema: Result<String, CheckFailure>,
    /// Whether any answer carried reasoning (a reasoning field or a think block), kept out of
    /// the answer.
    pub reasoning_seen: bool,
}

impl EndpointCheck {
    /// Whether the endpoint serves the configured model and every feature worked.
    pub fn is_healthy(&self) -> bool {
        self.models.is_ok()
            && self.model_listed == Some(true)
            && self.completion.is_ok()
            && self.tools.is_ok()
            && self.schema.is_ok()
    }
}

fn line<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    result: &Result<T, CheckFailure>,
) -> fmt::Result {
    match result {
        Ok(v) => writeln!(f, "  {what}: ok: {v}"),
        Err(e) => writeln!(f, "  {what}: FAILED: {e}"),
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
        writeln!(f, "  profile: {}", self.profile)?;
        match &self.models {
            Ok(models) => writeln!(
                f,
                "  models ({:.0} ms): {}",
                self.models_ms,
                models.join(", ")
            )?,
            Err(e) => writeln!(f, "  models: FAILED: {e}")?,
        }
        match self.model_listed {
            Some(true) => writeln!(f, "  model `{}`: served", self.model)?,
            Some(false) => writeln!(
                f,
                "  model `{}`: FAILED: not on the server's list; set [[llm.endpoints]] model \
                 (or SOC_LLM_MODEL) to one it serves",
                self.model
            )?,
            None => {}
        }
        match &self.completion {
            Ok(text) => writeln!(
                f,
                "  completion ({:.0} ms, {} tokens in, {} out): {text}",
                self.completion_ms, self.tokens.0, self.tokens.1
            )?,
            Err(e) => writeln!(f, "  completion: FAILED: {e}")?,
        }
        line(f, "tool call", &self.tools)?;
        line(f, "json schema answer", &self.schema)?;
        writeln!(
            f,
            "  reasoning: {}",
            if self.reasoning_seen {
                "seen (kept out of the answers; set `thinking = false` where the server has a switch, or give it `reasoning_max_tokens`)"
            } else {
                "none seen"
            }
        )
    }
}

/// One line of a model's text.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(160) {
        Some((cut, _)) => format!("{}...", &joined[..cut]),
        None => joined,
    }
}

/// Checks one endpoint.
pub async fn check(config: &EndpointConfig) -> EndpointCheck {
    let thinking = match config.thinking() {
        Some(true) => "on",
        Some(false) => "off",
        None => "server default",
    };
    let mut out = EndpointCheck {
        name: config.name.clone(),
        url: redact_url(&config.url),
        model: config.model.clone(),
        profile: format!(
            "{} (thinking {thinking}, reasoning budget {} tokens, tool_choice {}, json schema {})",
            serde_json::to_value(config.profile)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            config.reasoning_budget(),
            if config.sends_tool_choice() {
                "sent"
            } else {
                "not sent"
            },
            if config.sends_json_schema() {
                "sent"
            } else {
                "not sent"
            },
        ),
        models: Err(CheckFailure::NotChecked),
        model_listed: None,
        models_ms: 0.0,
        completion: Err(CheckFailure::NotChecked),
        completion_ms: 0.0,
        tokens: (0, 0),
        tools: Err(CheckFailure::NotChecked),
        schema: Err(CheckFailure::NotChecked),
        reasoning_seen: false,
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
    if let Ok(models) = &out.models {
        out.model_listed = Some(models.contains(&config.model));
    }
    let until = || Instant::now() + Duration::from_millis(config.timeout_ms);

    let request = ChatRequest {
        messages: vec![Message::user(
            "Reply with one short sentence: are you ready?",
        )],
        max_tokens: Some(24),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    let started = Instant::now();
    match endpoint.chat(&request, until()).await {
        Ok(answer) => {
            out.reasoning_seen |= answer.reasoning.is_some();
            out.completion = Ok(one_line(answer.content.as_deref().unwrap_or_default()));
            out.tokens = (answer.usage.prompt_tokens, answer.usage.completion_tokens);
        }
        Err(e) => out.completion = Err(CheckFailure::Completion(e)),
    }
    out.completion_ms = started.elapsed().as_secs_f64() * 1e3;

    let tool = Tool::function(
        CHECK_TOOL,
        "Looks up a host by name.",
        json!({"type": "object", "properties": {"host": {"type": "string"}}, "required": ["host"]}),
    );
    let request = ChatRequest {
        messages: vec![
            Message::system("You look up hosts with the tool you are given."),
            Message::user("Look up the host web-01."),
        ],
        tools: vec![tool],
        tool_choice: Some(ToolChoice::Required),
        max_tokens: Some(64),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    out.tools = match endpoint.chat(&request, until()).await {
        Err(e) => Err(CheckFailure::Completion(e)),
        Ok(answer) => {
            out.reasoning_seen |= answer.reasoning.is_some();
            match answer.tool_calls.first() {
                None => Err(CheckFailure::Feature(format!(
                    "the model answered without calling the offered tool: {}",
                    one_line(answer.content.as_deref().unwrap_or_default())
                ))),
                Some(call) if call.function.name != CHECK_TOOL => {
                    Err(CheckFailure::Feature(format!(
                        "the model called `{}`, a tool not offered",
                        call.function.name
                    )))
                }
                Some(call) => {
                    match serde_json::from_str::<serde_json::Value>(&call.function.arguments) {
                        Ok(args) => Ok(format!(
                            "{}({args}) as {} on the wire",
                            call.function.name,
                            super::names::wire_name(CHECK_TOOL)
                        )),
                        Err(e) => Err(CheckFailure::Feature(format!(
                            "the call's arguments are not JSON ({e}): {}",
                            one_line(&call.function.arguments)
                        ))),
                    }
                }
            }
        }
    };

    let schema = json!({
        "type": "object",
        "properties": {"ready": {"type": "boolean"}},
        "required": ["ready"],
        "additionalProperties": false,
    });
    let request = ChatRequest {
        messages: vec![Message::user(
            "Answer with a JSON object saying whether you are ready.",
        )],
        response_format: Some(JsonSchema {
            name: "check_answer".into(),
            schema,
        }),
        max_tokens: Some(48),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    out.schema = match endpoint.chat(&request, until()).await {
        Err(e) => Err(CheckFailure::Completion(e)),
        Ok(answer) => {
            out.reasoning_seen |= answer.reasoning.is_some();
            let text = answer.content.unwrap_or_default();
            match serde_json::from_str::<serde_json::Value>(text.trim()) {
                Ok(v) if v["ready"].is_boolean() => Ok(one_line(&text)),
                _ => Err(CheckFailure::Feature(format!(
                    "the answer does not follow the schema: {}",
                    one_line(&text)
                ))),
            }
        }
    };
    out
}
