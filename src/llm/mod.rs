//! The LLM gateway's home: the actor that owns access to the one local model.
//!
//! Not built yet. Until it is, every role decides with its deterministic rules reasoner (see
//! `src/actors/`), which is also what runs when no model endpoint is configured. The gateway
//! (OpenAI-compatible client, admission control, priority queue, failover) is the next piece of
//! work; see `DESIGN.md`, "LLM gateway".
