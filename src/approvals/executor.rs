//! The executor seam: what would carry out an approved action.
//!
//! Only [`DryRun`] exists: it logs what it would do and changes nothing. A real executor (an
//! EDR's containment API, a firewall) is a type implementing [`Executor`]; none is in this
//! codebase, so no approval can change a real system. The relay hands each approved decision
//! to the executor after publishing it; the published `ActionDecision` says `executed: false`.
//! `DryRun` is stateless: a restart loses nothing.

use crate::proto::{ActionDecision, ApprovalDecision};

/// Why an executor did not carry out a decision.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The executor will not act on it (not its kind of action, not allowed here).
    #[error("{0}")]
    Refused(String),
    /// It tried, and the system acted on failed.
    #[error("{0}")]
    Failed(String),
}

/// Carries out approved actions.
pub trait Executor: Send + Sync {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// Handles one decision; only approved ones may be acted on. Returns what was done.
    fn execute(&self, decision: &ActionDecision) -> Result<String, ExecuteError>;
}

/// Logs what it would do; executes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct DryRun;

impl Executor for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn execute(&self, decision: &ActionDecision) -> Result<String, ExecuteError> {
        if decision.decision != ApprovalDecision::Approved {
            return Ok(format!(
                "{} was rejected: nothing to do",
                decision.action_id
            ));
        }
        let done = format!(
            "dry run: would carry out {} (approved by {}); nothing was executed",
            decision.action_id, decision.decided_by
        );
        tracing::info!(action = %decision.action_id, by = %decision.decided_by, "{done}");
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_executes_nothing() {
        let approved = ActionDecision {
            action_id: "t-1/contain-host".into(),
            decision: ApprovalDecision::Approved,
            decided_by: "ana".into(),
            ..ActionDecision::default()
        };
        let said = DryRun.execute(&approved).unwrap();
        assert!(said.contains("would carry out t-1/contain-host") && said.contains("nothing"));
        let rejected = ActionDecision {
            decision: ApprovalDecision::Rejected,
            ..approved
        };
        assert!(DryRun.execute(&rejected).unwrap().contains("nothing to do"));
    }
}
