//! The circuit breaker of one endpoint.
//!
//! Closed: requests flow; `threshold` consecutive retryable failures open it. Open: the gateway
//! sends nothing there (a dead primary is not retried on every call) until the health probe
//! sees the endpoint answer again, which closes it. Time is not an input: the probe interval is
//! the cooldown, and the gateway owns the probe.

use serde::Serialize;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    /// Requests flow.
    Closed,
    /// Requests go elsewhere until a probe succeeds.
    Open,
}

/// What a report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing.
    None,
    /// The circuit opened.
    Opened,
    /// The circuit closed again.
    Closed,
}

/// Consecutive-failure breaker.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    threshold: u32,
    failures: u32,
    circuit: Circuit,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures.
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            failures: 0,
            circuit: Circuit::Closed,
        }
    }

    /// The state.
    pub(crate) fn circuit(&self) -> Circuit {
        self.circuit
    }

    /// Whether requests may go to the endpoint.
    pub(crate) fn is_closed(&self) -> bool {
        self.circuit == Circuit::Closed
    }

    /// A request succeeded.
    pub(crate) fn on_success(&mut self) {
        self.failures = 0;
    }

    /// A request failed in a way another endpoint might not.
    pub(crate) fn on_failure(&mut self) -> Transition {
        self.failures = self.failures.saturating_add(1);
        if self.circuit == Circuit::Closed && self.failures >= self.threshold {
            self.circuit = Circuit::Open;
            return Transition::Opened;
        }
        Transition::None
    }

    /// The health probe's result.
    pub(crate) fn on_probe(&mut self, healthy: bool) -> Transition {
        if healthy && self.circuit == Circuit::Open {
            self.circuit = Circuit::Closed;
            self.failures = 0;
            return Transition::Closed;
        }
        Transition::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_only_a_probe_closes_it() {
        let mut b = Breaker::new(2);
        assert_eq!(b.on_failure(), Transition::None);
        b.on_success();
        assert_eq!(b.on_failure(), Transition::None);
        assert_eq!(b.on_failure(), Transition::Opened);
        assert!(!b.is_closed());
        assert_eq!(b.on_failure(), Transition::None, "already open");
        b.on_success();
        assert!(
            !b.is_closed(),
            "a late success of an old request does not close it"
        );
        assert_eq!(b.on_probe(false), Transition::None);
        assert_eq!(b.on_probe(true), Transition::Closed);
        assert!(b.is_closed());
        assert_eq!(b.on_probe(true), Transition::None);
        assert_eq!(b.on_failure(), Transition::None, "the count restarted");
    }
}
