//! Tasks owned by actors.
//!
//! An actor that runs work on a task of its own (a feeder, a publisher, a server) holds the
//! task's handle in its state, so the task ends with the actor. The other direction needs this
//! guard: the task carries an [`ExitNotice`], and if the task ends without disarming it (a
//! panic, or a return nobody asked for), the notice tells the actor, which fails, so the
//! supervisor restarts it instead of leaving an actor that looks alive but does nothing.

use std::future::Future;

use tokio_util::task::AbortOnDropHandle;

/// Spawns `task` for an actor: the returned handle aborts it when dropped (keep it in the
/// actor's state), and `on_unexpected_exit` runs if the task panics or resolves to `false`
/// (it ended without being asked to). The callback typically casts a message that makes the
/// actor fail, so its supervisor restarts it.
pub(crate) fn spawn_watched<F>(
    task: F,
    on_unexpected_exit: impl FnOnce() + Send + 'static,
) -> AbortOnDropHandle<()>
where
    F: Future<Output = bool> + Send + 'static,
{
    let notice = ExitNotice::new(on_unexpected_exit);
    #[allow(
        clippy::disallowed_methods,
        reason = "owned by the returned handle, which the calling actor keeps"
    )]
    let handle = tokio::spawn(async move {
        if task.await {
            notice.disarm();
        }
    });
    AbortOnDropHandle::new(handle)
}

/// Calls its function when dropped, unless disarmed first.
#[must_use = "an exit notice fires when dropped"]
pub(crate) struct ExitNotice(Option<Box<dyn FnOnce() + Send>>);

impl ExitNotice {
    /// A notice that calls `on_unexpected_exit` if dropped armed.
    pub(crate) fn new(on_unexpected_exit: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(on_unexpected_exit)))
    }

    /// The task is ending as asked: drop the notice without firing it.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        if let Some(notify) = self.0.take() {
            notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn fires_only_when_dropped_armed() {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        ExitNotice::new(move || flag.store(true, Ordering::SeqCst)).disarm();
        assert!(!fired.load(Ordering::SeqCst));
        let flag = fired.clone();
        let notice = ExitNotice::new(move || flag.store(true, Ordering::SeqCst));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = notice;
            panic!("task failed");
        }));
        assert!(result.is_err());
        assert!(fired.load(Ordering::SeqCst));
    }
}
