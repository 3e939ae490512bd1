//! Sign-in throttling: password guessing slowed per account and per address.
//!
//! Each key (an account name, a client address) may fail [`FREE_FAILURES`] times; every
//! further failure locks the key for a delay that doubles from one second up to
//! [`MAX_DELAY`] (15 minutes). A locked key is answered at once (429 with `Retry-After`),
//! without checking the password, so a lock also spares the hashing threads. A success clears
//! both of its keys; a key with no failure for [`FORGET_AFTER`] is forgotten.
//!
//! State is in memory (a restart forgets it) and bounded: past [`MAX_KEYS`] keys, the oldest
//! unlocked ones are dropped first, and if every key is locked the newcomer is locked too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failures allowed before the first lock.
pub(crate) const FREE_FAILURES: u32 = 5;
/// The longest lock.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A key with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Most keys remembered.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Failure counts and locks per key.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    keys: Mutex<HashMap<String, Record>>,
}

impl Throttle {
    /// How long `keys` must still wait, if any of them is locked (the longest wait).
    pub(crate) fn locked(&self, keys: &[&str], now: Instant) -> Option<Duration> {
        let map = self.keys.lock();
        keys.iter()
            .filter_map(|k| map.get(*k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed sign-in on each of `keys`; the lock it earned, if any (the longest).
    pub(crate) fn failed(&self, keys: &[&str], now: Instant) -> Option<Duration> {
        let mut map = self.keys.lock();
        if map.len() + keys.len() > MAX_KEYS {
            map.retain(|_, r| {
                now.duration_since(r.last_failure) < FORGET_AFTER
                    && r.locked_until.is_some_and(|u| u > now)
            });
        }
        let mut longest = None;
        for key in keys {
            if !map.contains_key(*key) && map.len() >= MAX_KEYS {
                // Full of locked keys: whoever is new waits as long as the longest lock.
                longest = Some(MAX_DELAY);
                continue;
            }
            let record = map.entry((*key).to_owned()).or_insert(Record {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            if now.duration_since(record.last_failure) >= FORGET_AFTER {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last_failure = now;
            if record.failures > FREE_FAILURES {
                let delay = delay_after(record.failures);
                record.locked_until = Some(now + delay);
                longest = longest.max(Some(delay));
            }
        }
        longest
    }

    /// A successful sign-in clears `keys`.
    pub(crate) fn succeeded(&self, keys: &[&str]) {
        let mut map = self.keys.lock();
        for key in keys {
            map.remove(*key);
        }
    }
}

/// The lock after `failures` failures: 1 s after the first past the free ones, doubling, at
/// most [`MAX_DELAY`].
pub(crate) fn delay_after(failures: u32) -> Duration {
    let over = failures.saturating_sub(FREE_FAILURES + 1).min(20);
    Duration::from_secs(1u64 << over).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_then_locks_double_up_to_fifteen_minutes() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed(&["account:ana"], now), None);
        }
        assert_eq!(t.locked(&["account:ana"], now), None);
        assert_eq!(
            t.failed(&["account:ana"], now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            t.locked(&["account:ana", "address:x"], now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(t.locked(&["address:x"], now), None);
        assert_eq!(
            t.failed(&["account:ana"], now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(delay_after(16), Duration::from_secs(1024).min(MAX_DELAY));
        assert_eq!(delay_after(200), MAX_DELAY);
        let later = now + Duration::from_secs(3);
        assert_eq!(t.locked(&["account:ana"], later), None);
        t.succeeded(&["account:ana"]);
        assert_eq!(
            t.failed(&["account:ana"], later),
            None,
            "a success starts afresh"
        );
    }
}
