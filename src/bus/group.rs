//! Consumer groups: a group's state, and the consumer names of processes (`host:pid:role`),
//! by which a dead local consumer's pending entries are recognised.

use serde::Serialize;

use super::wire::Topic;

/// State of one consumer group, for idleness checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupState {
    /// The stream.
    pub topic: Topic,
    /// The group.
    pub group: String,
    /// Entries delivered but not yet acked.
    pub pending: u64,
    /// Whether entries exist that the group has not read yet.
    pub has_unread: bool,
    /// Entries not yet read by the group, when the backend knows (Redis's `lag` is unknown
    /// after trims or deletions).
    pub lag: Option<u64>,
}

impl GroupState {
    /// Nothing pending and nothing unread.
    pub fn is_idle(&self) -> bool {
        self.pending == 0 && !self.has_unread
    }
}

/// The consumer name for a role in this process: `host:pid:role`.
pub fn consumer_name(role: &str) -> String {
    format!(
        "{}:{}:{role}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// Whether a consumer name belongs to a process of this host that has exited.
pub(crate) fn is_dead_local_consumer(name: &str, me: &str) -> bool {
    let host = gethostname::gethostname();
    let host = host.to_string_lossy();
    let mut parts = name.rsplitn(3, ':');
    let (Some(_role), Some(pid), Some(their_host)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if name == me || their_host != host {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid != std::process::id() => !process_alive(pid),
        _ => false,
    }
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_alive(_pid: u32) -> bool {
    // Without a cheap liveness check, leave other processes' entries to XAUTOCLAIM.
    true
}
