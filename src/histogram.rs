//! A lock-free latency histogram with fixed buckets, written in the Prometheus text format.
//! A leaf: it imports nothing of the crate.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency histograms, seconds.
pub(crate) const BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A lock-free latency histogram with fixed buckets ([`BUCKETS_S`]).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS_S.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let at = BUCKETS_S.partition_point(|&b| b < seconds);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the histogram in the Prometheus text format as `name` with `labels`.
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS_S.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_everything() {
        let h = Histogram::default();
        for s in [0.001, 0.02, 0.02, 7.0, 1e9, f64::NAN] {
            h.observe(s);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "role=\"r\"");
        assert!(out.contains("x_bucket{role=\"r\",le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{role=\"r\",le=\"0.025\"} 4"));
        assert!(out.contains("x_bucket{role=\"r\",le=\"10\"} 5"));
        assert!(out.contains("x_bucket{role=\"r\",le=\"+Inf\"} 6"));
        assert!(out.contains("x_count{role=\"r\"} 6"));
        assert_eq!(h.count(), 6);
    }
}
