//! The LLM gateway: the one door to the local model that every role reasons with.
//!
//! - `client`: an OpenAI-compatible `/v1/chat/completions` client (reqwest), streaming over SSE
//!   or not, with tools and JSON-schema output. One request shape for vLLM, llama.cpp's server,
//!   Ollama and hosted APIs; what a particular model needs (stop strings, an assistant prefill
//!   before tool calls, a forced `tool_choice`, extra body fields) is endpoint configuration
//!   ([`EndpointConfig`]), never a code path.
//! - [`gateway`]: the actor that owns access to the model: `max_in_flight` per endpoint, a
//!   bounded priority queue, an immediate [`LlmError::Overloaded`] when it is full, deadlines,
//!   failover across ordered endpoints with a circuit breaker and a health probe, accounting.
//! - [`Llm`]: the handle roles call; cheap to clone, resolves the actor by name on each call.
//!
//! Nothing here retries forever or queues without bound: a caller always gets an answer or a
//! typed error, and a role that gets `Overloaded` leaves its input pending in the bus.

pub mod breaker;
pub mod canned;
pub mod check;
pub(crate) mod client;
pub mod gateway;
pub(crate) mod queue;
pub mod reason;
pub mod stats;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gateway::Llm;

use crate::secret::Secret;

/// Who speaks in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// Instructions.
    System,
    /// The user (for a role: the case, quoted as data).
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One message of a conversation, as the OpenAI chat API spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who says it.
    pub role: Speaker,
    /// The text (absent on an assistant turn that only calls tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls the assistant made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn text(role: Speaker, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Speaker::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Speaker::User, content)
    }

    /// An assistant message with text.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(Speaker::Assistant, content)
    }

    /// The assistant turn that made `calls` (to send back with their results).
    pub fn assistant_calls(calls: Vec<ToolCall>) -> Self {
        Self {
            role: Speaker::Assistant,
            content: None,
            tool_calls: calls,
            tool_call_id: None,
        }
    }

    /// A tool's result for call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: Speaker::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
        }
    }
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id; a tool result names it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// What to call.
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".to_owned()
}

/// The function and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments: a JSON document, as text (the model wrote it; parse and validate it).
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

impl Tool {
    /// A function tool.
    pub fn function(name: &str, description: &str, parameters: serde_json::Value) -> Self {
        Self {
            kind: function_kind(),
            function: FunctionDef {
                name: name.to_owned(),
                description: description.to_owned(),
                parameters,
            },
        }
    }
}

/// A function's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must call some tool.
    Required,
    /// The model must not call tools.
    None,
    /// The model must call this function.
    Function(String),
}

impl ToolChoice {
    fn to_json(&self) -> serde_json::Value {
        match self {
            ToolChoice::Auto => "auto".into(),
            ToolChoice::Required => "required".into(),
            ToolChoice::None => "none".into(),
            ToolChoice::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}})
            }
        }
    }

    /// Parses `auto`, `required`, `none`, or a function name.
    pub fn parse(s: &str) -> Self {
        match s {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => ToolChoice::None,
            name => ToolChoice::Function(name.to_owned()),
        }
    }
}

/// The answer's required shape: a JSON Schema the server enforces (grammar-constrained on
/// llama.cpp, structured outputs on vLLM and hosted APIs).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchema {
    /// A name for the schema.
    pub name: String,
    /// The schema.
    pub schema: serde_json::Value,
}

/// One chat completion request: the conversation and what the answer must look like. It is
/// sent identically on every failover leg.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools offered.
    pub tools: Vec<Tool>,
    /// Tool choice (server default when `None`).
    pub tool_choice: Option<ToolChoice>,
    /// Required answer shape.
    pub response_format: Option<JsonSchema>,
    /// Longest answer, tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Model name for this request; the endpoint's configured model when `None`.
    pub model: Option<String>,
    /// Stream the answer (SSE); the caller still receives one assembled answer.
    pub stream: bool,
}

/// Token counts the server reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// An assembled answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    /// The text, if any.
    pub content: Option<String>,
    /// Tool calls, in order, with their arguments reassembled.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped (`stop`, `length`, `tool_calls`).
    pub finish_reason: Option<String>,
    /// Token counts (zero when the server reported none).
    pub usage: Usage,
    /// The model the server says answered.
    pub model: String,
    /// The endpoint that answered.
    pub endpoint: String,
    /// Legs tried, including the one that answered.
    pub attempts: u32,
    /// Time spent queued in the gateway.
    pub queued: Duration,
    /// Time from the answering leg's start to its first token (the whole leg when not
    /// streaming).
    pub ttft: Duration,
    /// Time from the answering leg's start to the end of the answer.
    pub upstream: Duration,
}

/// Which work a request serves: orders the gateway's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Work on one case, by its alert priority (1 lowest .. 10 highest; unknown counts as 5).
    Case(Option<u8>),
    /// A windowed report (shift summary, tuning, hunting): served after case work, but never
    /// starved (see `queue`).
    Report,
}

impl Priority {
    /// 0 (most urgent) ..= 10 (reports).
    pub(crate) fn rank(self) -> u64 {
        match self {
            Priority::Case(p) => 10 - u64::from(p.unwrap_or(5).clamp(1, 10)),
            Priority::Report => 10,
        }
    }
}

/// Who asks and how long they wait.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// The asking role (accounting).
    pub role: String,
    /// Queue order.
    pub priority: Priority,
    /// How long the caller waits in all, queue included; the gateway's default when `None`.
    pub deadline: Option<Duration>,
}

impl CallOptions {
    /// Case work for `role` at alert priority `priority`.
    pub fn case(role: &str, priority: Option<u8>) -> Self {
        Self {
            role: role.to_owned(),
            priority: Priority::Case(priority),
            deadline: None,
        }
    }

    /// Report work for `role`.
    pub fn report(role: &str) -> Self {
        Self {
            role: role.to_owned(),
            priority: Priority::Report,
            deadline: None,
        }
    }

    /// With a deadline.
    pub fn within(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// `[llm]`: the gateway and its endpoints. No endpoints: the gateway is off and every role uses
/// its rules reasoner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Endpoints in failover order: the first is the primary.
    pub endpoints: Vec<EndpointConfig>,
    /// Requests that may wait in the queue; one more gets `Overloaded` at once.
    pub queue_capacity: usize,
    /// Aging step of the priority queue, ms: each step waited counts as one priority rank, so
    /// a report waits at most ten steps longer than the most urgent case work arriving after it.
    pub aging_ms: u64,
    /// Default deadline of a call, queue included, ms.
    pub deadline_ms: u64,
    /// How often endpoints with an open circuit are probed, ms.
    pub probe_interval_ms: u64,
    /// Consecutive failures (connection error, timeout, 429, 5xx, broken stream) that open an
    /// endpoint's circuit.
    pub failure_threshold: u32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            queue_capacity: 64,
            aging_ms: 2_000,
            deadline_ms: 120_000,
            probe_interval_ms: 2_000,
            failure_threshold: 1,
        }
    }
}

/// One model server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointConfig {
    /// A name for logs and stats (`primary`, `secondary`, ...).
    pub name: String,
    /// Base URL of the OpenAI-compatible API, up to and including `/v1`.
    pub url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Bearer token (`Authorization: Bearer ...`), when the server wants one.
    /// `SOC_LLM_API_KEY` sets it on every endpoint; give each its own here when they differ.
    pub api_key: Option<Secret>,
    /// Requests sent to this endpoint at once (1: a single GPU stream).
    pub max_in_flight: usize,
    /// Connect timeout, ms.
    pub connect_timeout_ms: u64,
    /// Longest one leg may take, ms (bounded by the call's deadline too).
    pub timeout_ms: u64,
    /// Longest silence between response headers and stream chunks, ms.
    pub idle_timeout_ms: u64,
    /// Probe timeout, ms.
    pub probe_timeout_ms: u64,
    /// Largest response accepted, bytes.
    pub max_response_bytes: usize,
    /// Stop strings added to every request.
    pub stop: Vec<String>,
    /// Stop strings added to requests that offer tools (`</tool_call>` for small models).
    pub tool_stop: Vec<String>,
    /// An assistant prefill appended to requests that offer tools (`<tool_call>\n` makes a
    /// 135M model call tools reliably).
    pub tool_prefill: Option<String>,
    /// Forces `tool_choice` on requests that offer tools (`required`, `auto`, `none`, a name).
    pub tool_choice: Option<String>,
    /// Extra fields merged into every request body (server-specific sampling options).
    pub extra_body: serde_json::Map<String, serde_json::Value>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            model: "default".to_owned(),
            api_key: None,
            max_in_flight: 1,
            connect_timeout_ms: 2_000,
            timeout_ms: 60_000,
            idle_timeout_ms: 30_000,
            probe_timeout_ms: 1_000,
            max_response_bytes: 4 << 20,
            stop: Vec::new(),
            tool_stop: Vec::new(),
            tool_prefill: None,
            tool_choice: None,
            extra_body: serde_json::Map::new(),
        }
    }
}

impl LlmConfig {
    /// Applies `SOC_LLM_PRIMARY_URL`, `SOC_LLM_SECONDARY_URL`, `SOC_LLM_MODEL` and
    /// `SOC_LLM_API_KEY` read through `var`.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        for (i, key, name) in [
            (0, "SOC_LLM_PRIMARY_URL", "primary"),
            (1, "SOC_LLM_SECONDARY_URL", "secondary"),
        ] {
            let Some(url) = var(key) else { continue };
            while self.endpoints.len() <= i {
                let n = self.endpoints.len();
                self.endpoints.push(EndpointConfig {
                    name: if n == 0 { "primary" } else { name }.to_owned(),
                    ..EndpointConfig::default()
                });
            }
            self.endpoints[i].url = url;
        }
        if let Some(model) = var("SOC_LLM_MODEL") {
            for e in &mut self.endpoints {
                e.model.clone_from(&model);
            }
        }
        if let Some(key) = var("SOC_LLM_API_KEY") {
            for e in &mut self.endpoints {
                e.api_key = Some(Secret::new(key.clone()));
            }
        }
    }

    /// Checks every value; the message names the key.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.queue_capacity == 0 || self.aging_ms == 0 || self.deadline_ms == 0 {
            return Err(LlmError::Config(
                "llm.queue_capacity, aging_ms and deadline_ms must be at least 1".into(),
            ));
        }
        if self.probe_interval_ms == 0 || self.failure_threshold == 0 {
            return Err(LlmError::Config(
                "llm.probe_interval_ms and failure_threshold must be at least 1".into(),
            ));
        }
        if self.endpoints.len() > gateway::MAX_ENDPOINTS {
            return Err(LlmError::Config(format!(
                "llm.endpoints: at most {} endpoints",
                gateway::MAX_ENDPOINTS
            )));
        }
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = format!("llm.endpoints[{i}]");
            if e.name.is_empty() {
                return Err(LlmError::Config(format!(
                    "{at}.name is empty: name it (primary, secondary, ...)"
                )));
            }
            if !names.insert(e.name.as_str()) {
                return Err(LlmError::Config(format!(
                    "{at}.name `{}` is used twice",
                    e.name
                )));
            }
            let url = reqwest::Url::parse(&e.url).map_err(|err| {
                let shown = crate::secret::redact_url(&e.url);
                LlmError::Config(format!("{at}.url `{shown}` is not a URL: {err}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(LlmError::Config(format!(
                    "{at}.url must be http:// or https://"
                )));
            }
            if e.model.is_empty() {
                return Err(LlmError::Config(format!("{at}.model is empty")));
            }
            if e.max_in_flight == 0 || e.connect_timeout_ms == 0 || e.timeout_ms == 0 {
                return Err(LlmError::Config(format!(
                    "{at}: max_in_flight, connect_timeout_ms and timeout_ms must be at least 1"
                )));
            }
            if e.idle_timeout_ms == 0 || e.probe_timeout_ms == 0 || e.max_response_bytes == 0 {
                return Err(LlmError::Config(format!(
                    "{at}: idle_timeout_ms, probe_timeout_ms and max_response_bytes must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The queue is full: leave the input pending and try again later.
    #[error("llm gateway overloaded: {queued} requests already queued (capacity {capacity})")]
    Overloaded {
        /// Requests queued.
        queued: usize,
        /// Queue capacity.
        capacity: usize,
    },
    /// The deadline passed before an answer (queued or in flight).
    #[error("no answer within the deadline of {0:?}")]
    DeadlineExceeded(Duration),
    /// An endpoint refused the request itself (HTTP 4xx other than 408/429): failover would
    /// not help, so it was not retried.
    #[error("{endpoint} rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// Endpoint.
        endpoint: String,
        /// Status.
        status: u16,
        /// What the server said (truncated).
        message: String,
    },
    /// Every endpoint the call could use failed, or every circuit is open.
    #[error("no llm endpoint could answer: {}", attempts_text(.0))]
    Unavailable(Vec<AttemptError>),
    /// The request cannot be sent as built.
    #[error("invalid llm request: {0}")]
    Invalid(String),
    /// `[llm]` is refused.
    #[error("{0}")]
    Config(String),
    /// The gateway is not running (no endpoints configured, or it is restarting).
    #[error("the llm gateway is not running")]
    NotRunning,
}

impl LlmError {
    /// Whether the same call may well succeed later (the queue was full, the deadline passed,
    /// no endpoint answered, the gateway was restarting): the caller should keep its input
    /// and retry, not give up on it.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            LlmError::Overloaded { .. }
                | LlmError::DeadlineExceeded(_)
                | LlmError::Unavailable(_)
                | LlmError::NotRunning
        )
    }
}

fn attempts_text(attempts: &[AttemptError]) -> String {
    if attempts.is_empty() {
        return "every endpoint's circuit is open".to_owned();
    }
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What went wrong on one leg.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {kind}: {message}")]
pub struct AttemptError {
    /// Endpoint name.
    pub endpoint: String,
    /// What kind of failure.
    pub kind: AttemptErrorKind,
    /// Detail.
    pub message: String,
}

/// Kinds of leg failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptErrorKind {
    /// Could not connect, or the connection dropped.
    Connect,
    /// No answer (or no next chunk) in time.
    Timeout,
    /// HTTP 408, 429 or 5xx.
    Status(u16),
    /// The SSE stream ended or broke before `[DONE]`.
    BrokenStream,
    /// The body was not a chat completion (or too large).
    Protocol,
    /// HTTP 4xx the request itself caused: not retried.
    Rejected(u16),
}

impl fmt::Display for AttemptErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptErrorKind::Connect => f.write_str("connection failed"),
            AttemptErrorKind::Timeout => f.write_str("timed out"),
            AttemptErrorKind::Status(s) => write!(f, "HTTP {s}"),
            AttemptErrorKind::BrokenStream => f.write_str("stream broke"),
            AttemptErrorKind::Protocol => f.write_str("not a chat completion"),
            AttemptErrorKind::Rejected(s) => write!(f, "rejected with HTTP {s}"),
        }
    }
}
