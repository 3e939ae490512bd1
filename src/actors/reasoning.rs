//! `[reasoning]`: which reasoner decides a role's case (rules, the model, or both by risk),
//! and the judgment's policy settings the section gives.

use serde::{Deserialize, Serialize};

/// `[reasoning]`: which reasoner decides what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReasoningConfig {
    /// `rules` (never the model), `llm` (the model decides every case a role takes), or
    /// `hybrid` (low-risk alerts to rules, the rest to the model). With no `[[llm.endpoints]]`
    /// the rules reasoner decides everything, whatever this says.
    pub mode: ReasoningMode,
    /// In hybrid mode, the probability of escalation from which an alert goes to the model
    /// (0.1: cases the score is not sure are noise).
    pub hybrid_llm_from: f64,
    /// Give the model the case's precedent (the most similar cases the analysts already
    /// decided, with their decision, and the host's cases of the last hour) in the prompt. Off
    /// by default, so its value is an A/B backtest.
    pub precedent: bool,
    /// How much the escalation policy weighs recall against precision: the threshold is the
    /// one with the best F-beta on the history, beta = this (2: a missed attack costs more
    /// than a second look at a false alarm).
    pub recall_weight: f64,
    /// Half-life of a site's own dispositions in alert time, days: older closings and
    /// escalations count less.
    pub half_life_days: f64,
    /// How long after a case's last alert its disposition usually arrives (`4h`), or `off`:
    /// the fit of the score simulates feedback with this lag.
    pub feedback_lag: String,
}

impl Default for ReasoningConfig {
    fn default() -> Self {
        Self {
            mode: ReasoningMode::Hybrid,
            hybrid_llm_from: 0.1,
            precedent: false,
            recall_weight: 2.0,
            half_life_days: 30.0,
            feedback_lag: "4h".into(),
        }
    }
}

impl ReasoningConfig {
    /// The judgment's policy settings this section gives (a `feedback_lag` that does not
    /// parse, refused by `Config::validate` first, means no feedback here).
    pub fn judgment(&self) -> crate::judgment::model::Settings {
        let lag = match self.feedback_lag.trim() {
            "off" | "" => None,
            text => humantime::parse_duration(text)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .filter(|ms| *ms > 0),
        };
        crate::judgment::model::Settings {
            half_life_ms: self.half_life_days.max(1e-3) * 86_400_000.0,
            recall_weight: self.recall_weight,
            feedback_lag_ms: lag,
            ..crate::judgment::model::Settings::default()
        }
    }
}

/// Reasoning modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningMode {
    /// The rules reasoner only.
    Rules,
    /// The model for every case.
    Llm,
    /// Low-risk alerts to rules, the rest to the model.
    Hybrid,
}
