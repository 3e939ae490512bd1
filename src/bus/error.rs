//! The bus's errors, and which Redis errors are passing trouble (retry later) rather than a
//! refusal.

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis could not be reached or the connection broke.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] ::redis::RedisError),
    /// Redis answered with an error.
    #[error("redis error: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// The bus bridge's buffer is full (Redis is down or slow): the work was refused, not lost.
    #[error("bus bridge buffer full ({0} commits waiting): redis is unreachable or too slow")]
    Backpressure(usize),
    /// The bus is shutting down.
    #[error("bus is shut down")]
    Closed,
    /// An answer did not have the expected shape.
    #[error("unexpected bus protocol data: {0}")]
    Protocol(String),
    /// A setting is invalid.
    #[error("invalid bus configuration: {0}")]
    Config(String),
    /// A commit breaks the bus's rules; nothing of it was written.
    #[error("invalid commit: {0}")]
    Invalid(String),
    /// Redis applied a batch but did not make it durable as configured in time: it does not
    /// count as accepted yet (the batch is retried; its fences make that safe).
    #[error("not durable: {0}")]
    NotDurable(String),
}

impl BusError {
    /// Whether Redis answered, refusing for a while (out of memory, a read-only replica, a
    /// dataset loading): reachable, but not taking writes.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, BusError::Unavailable(e) if e.code().is_some())
            || matches!(self, BusError::NotDurable(_))
    }

    /// Whether retrying later can help (connection trouble or backpressure).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            BusError::Unavailable(_)
                | BusError::Backpressure(_)
                | BusError::Closed
                | BusError::NotDurable(_)
        )
    }
}

impl From<::redis::RedisError> for BusError {
    fn from(e: ::redis::RedisError) -> Self {
        // Server states that pass: loading a dataset, a busy script, a failover, a replica
        // answering, memory full until something is trimmed or freed.
        const PASSING: [&str; 7] = [
            "LOADING",
            "BUSY",
            "TRYAGAIN",
            "MASTERDOWN",
            "READONLY",
            "OOM",
            "CLUSTERDOWN",
        ];
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || e.code().is_some_and(|code| PASSING.contains(&code))
        {
            BusError::Unavailable(e)
        } else {
            BusError::Redis(e)
        }
    }
}
