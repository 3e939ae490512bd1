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
pub mod lease;
pub(crate) mod names;
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
    /// Generated tokens (reasoning included).
    #[serde(default)]
    pub completion_tokens: u64,
    /// Prompt tokens the server took from its prefix cache
    /// (`usage.prompt_tokens_details.cached_tokens`; zero where the server does not say).
    #[serde(default)]
    pub cached_tokens: u64,
    /// Generated tokens spent on reasoning, where the server counts them
    /// (`usage.completion_tokens_details.reasoning_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
    }
}

/// An assembled answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    /// The text, if any, without the model's reasoning.
    pub content: Option<String>,
    /// The model's reasoning, kept out of `content`: a `reasoning_content` or `reasoning`
    /// field, or a `<think>...</think>` block the answer started with.
    pub reasoning: Option<String>,
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
    /// How long every endpoint's circuit must have been open before roles stop waiting for
    /// the model and decide by rules, marked degraded, ms (monitoring continues while the
    /// AI is down; the model takes over again when an endpoint answers a probe).
    pub degrade_after_ms: u64,
    /// A `run --until-idle` in which more than this share of the model's final answers
    /// failed validation exits non-zero (and any run warns past it).
    pub max_invalid_ratio: f64,
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
            degrade_after_ms: 30_000,
            max_invalid_ratio: 0.5,
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
    /// What kind of server this is: decides how thinking is switched and which request
    /// features are sent (see [`Profile`]).
    pub profile: Profile,
    /// Whether the model should reason before answering: `false` sends the profile's switch
    /// that turns thinking off, `true` the one that turns it on; unset, the profile's default
    /// ([`Profile::default_thinking`]). Reasoning is never parsed as the answer either way.
    pub thinking: Option<bool>,
    /// Tokens added to every request's `max_tokens` for the model's reasoning; unset, 0 when
    /// thinking is off and 2048 otherwise (a role's own budget is for its answer).
    pub reasoning_max_tokens: Option<u32>,
    /// Whether the server honours `tool_choice`; unset, the profile's default. Where it does
    /// not, `tool_choice` is not sent.
    pub tool_choice_supported: Option<bool>,
    /// Whether the server enforces a `response_format` JSON Schema; unset, the profile's
    /// default. Where it does not, the schema is only in the prompt and the answer is
    /// validated after the fact, as always.
    pub json_schema_supported: Option<bool>,
    /// Calls this endpoint may have in flight across every process sharing the Redis bus
    /// hold leases for this long, ms; a holder renews at a third of it, and a dead holder's
    /// slot returns when it lapses. Ignored on the in-memory bus.
    pub lease_ms: u64,
    /// Stream every answer (SSE): a stalled answer is detected by `idle_timeout_ms` instead
    /// of waiting out the leg timeout, and time to first token is measured. The caller still
    /// gets one assembled answer.
    pub stream: bool,
    /// Endpoints of equal rank share load (by free slots); a higher rank is used only when
    /// every endpoint of the lower ranks is failing or full. Unset: the endpoint's position
    /// in the list (strict failover order).
    pub rank: Option<u32>,
}

/// The kinds of OpenAI-compatible server, and what each does differently. Sources:
/// `tests/fixtures/llm/profiles/README.md`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// llama.cpp's `llama-server` (`--jinja`): `chat_template_kwargs.enable_thinking`,
    /// grammar-constrained JSON Schema, `tool_choice`, cached-token counts.
    #[default]
    Llamacpp,
    /// vLLM: `chat_template_kwargs.enable_thinking`, `reasoning_content` with a reasoning
    /// parser, structured outputs, `tool_choice` (`auto` needs `--enable-auto-tool-choice`).
    Vllm,
    /// Ollama's OpenAI-compatible API: `reasoning_effort: none` turns thinking off, JSON
    /// Schema `response_format`; `tool_choice` is not honoured.
    Ollama,
    /// A hosted OpenAI-compatible API: no thinking switch is sent (non-standard fields are
    /// refused there), strict tool names, `tool_choice` and structured outputs.
    Openai,
}

impl Profile {
    /// Whether thinking is switched off when `thinking` is unset: where the server has a
    /// switch, yes (a role answers a schema; reasoning costs GPU time and the answer budget).
    pub fn default_thinking(self) -> Option<bool> {
        match self {
            Profile::Llamacpp | Profile::Vllm | Profile::Ollama => Some(false),
            Profile::Openai => None,
        }
    }

    /// The body fields that switch thinking on or off, if the server has such a switch.
    pub fn thinking_switch(self, on: bool) -> Option<(&'static str, serde_json::Value)> {
        match self {
            Profile::Llamacpp | Profile::Vllm => Some((
                "chat_template_kwargs",
                serde_json::json!({"enable_thinking": on}),
            )),
            Profile::Ollama => Some((
                "reasoning_effort",
                serde_json::Value::from(if on { "medium" } else { "none" }),
            )),
            Profile::Openai => None,
        }
    }

    /// Whether `tool_choice` is honoured by default.
    pub fn tool_choice_supported(self) -> bool {
        !matches!(self, Profile::Ollama)
    }
}

impl EndpointConfig {
    /// Whether thinking is on (`Some(true)`), off, or the server's default (`None`).
    pub fn thinking(&self) -> Option<bool> {
        self.thinking.or(self.profile.default_thinking())
    }

    /// Tokens added to a request's `max_tokens` for reasoning.
    pub fn reasoning_budget(&self) -> u32 {
        self.reasoning_max_tokens.unwrap_or(match self.thinking() {
            Some(false) => 0,
            _ => 2048,
        })
    }

    /// Whether `tool_choice` is sent.
    pub fn sends_tool_choice(&self) -> bool {
        self.tool_choice_supported
            .unwrap_or(self.profile.tool_choice_supported())
    }

    /// Whether `response_format` is sent.
    pub fn sends_json_schema(&self) -> bool {
        self.json_schema_supported.unwrap_or(true)
    }
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
            profile: Profile::default(),
            thinking: None,
            reasoning_max_tokens: None,
            tool_choice_supported: None,
            json_schema_supported: None,
            lease_ms: 30_000,
            stream: false,
            rank: None,
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
        if !(0.0..=1.0).contains(&self.max_invalid_ratio) {
            return Err(LlmError::Config(
                "llm.max_invalid_ratio must be between 0 and 1".into(),
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
            if !matches!(url.scheme(), "http" | "https") && !canned::is_in_process(&e.url) {
                return Err(LlmError::Config(format!(
                    "{at}.url must be http:// or https:// (or `{}`, the canned-answer model \
                     of dry runs)",
                    canned::IN_PROCESS_URL
                )));
            }
            if e.model.is_empty() {
                return Err(LlmError::Config(format!("{at}.model is empty")));
            }
            if e.lease_ms < 300 {
                return Err(LlmError::Config(format!(
                    "{at}.lease_ms must be at least 300 (a holder renews at a third of it)"
                )));
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
