//! What `/healthz` reports: written by the supervisor (children up or down, draining), read
//! by the HTTP server. In memory: a process restart starts it again from "every child down"
//! until the supervisor has started them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// What `/healthz` reports; written by the supervisor, read by the handler.
pub struct Health {
    backend: &'static str,
    draining: AtomicBool,
    children: Mutex<BTreeMap<String, bool>>,
    bus_connected: Box<dyn Fn() -> BusHealth + Send + Sync>,
}

/// What the bus says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusHealth {
    /// Whether the bus takes writes.
    pub connected: bool,
    /// `connected`, `unreachable` or `refusing` (Redis answers but refuses writes).
    pub state: &'static str,
    /// The last trouble, if any.
    pub error: Option<String>,
}

impl BusHealth {
    /// A bus that takes writes (the in-memory one).
    pub fn up() -> Self {
        Self {
            connected: true,
            state: "connected",
            error: None,
        }
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("backend", &self.backend)
            .field("draining", &self.draining)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// The `/healthz` body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HealthReport {
    /// `ok`, `degraded` (a child is down or the bus unreachable) or `draining`.
    pub status: &'static str,
    /// Bus backend.
    pub bus: &'static str,
    /// Whether the bus accepts writes.
    pub bus_connected: bool,
    /// `connected`, `unreachable` or `refusing` (Redis answers but refuses writes).
    pub bus_state: &'static str,
    /// Why the bus is not connected, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_error: Option<String>,
    /// Each supervised child and whether it is running.
    pub children: BTreeMap<String, bool>,
}

impl Health {
    /// Health of a runtime on `backend`; `bus_connected` probes the bus.
    pub fn new(
        backend: &'static str,
        bus_connected: Box<dyn Fn() -> BusHealth + Send + Sync>,
    ) -> Self {
        Self {
            backend,
            draining: AtomicBool::new(false),
            children: Mutex::new(BTreeMap::new()),
            bus_connected,
        }
    }

    /// Records whether a child is running.
    pub(crate) fn set_child(&self, name: &str, up: bool) {
        self.children.lock().insert(name.to_owned(), up);
    }

    /// Marks the runtime as draining.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The current report.
    pub fn report(&self) -> HealthReport {
        let children = self.children.lock().clone();
        let bus = (self.bus_connected)();
        let bus_connected = bus.connected;
        let status = if self.draining.load(Ordering::Relaxed) {
            "draining"
        } else if children.values().all(|up| *up) && bus_connected {
            "ok"
        } else {
            "degraded"
        };
        HealthReport {
            status,
            bus: self.backend,
            bus_connected,
            bus_state: bus.state,
            bus_error: (!bus_connected).then_some(bus.error).flatten(),
            children,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn health_is_ok_degraded_or_draining() {
        let bus_up = Arc::new(AtomicBool::new(true));
        let probe = bus_up.clone();
        let health = Health::new(
            "redis",
            Box::new(move || BusHealth {
                connected: probe.load(Ordering::Relaxed),
                state: "connected",
                error: None,
            }),
        );
        health.set_child("sentinel", true);
        assert_eq!(health.report().status, "ok");
        health.set_child("sentinel", false);
        assert_eq!(health.report().status, "degraded");
        health.set_child("sentinel", true);
        bus_up.store(false, Ordering::Relaxed);
        let report = health.report();
        assert_eq!((report.status, report.bus_connected), ("degraded", false));
        health.set_draining();
        assert_eq!(health.report().status, "draining");
    }
}
