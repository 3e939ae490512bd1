//! How well the probabilities are calibrated: the Brier score and a reliability table.

use serde::{Deserialize, Serialize};

/// One bin of the reliability table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Lower edge of the predicted probability.
    pub from: f64,
    /// Upper edge (exclusive, but the last bin holds 1.0).
    pub to: f64,
    /// Cases in the bin.
    pub cases: u64,
    /// Their mean predicted probability.
    pub mean_p: f64,
    /// The share of them the analysts escalated.
    pub escalated_rate: f64,
}

/// Brier score and reliability table of a set of predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Cases with a probability.
    pub cases: u64,
    /// Mean squared error of the probability against the analysts' answer (0 is perfect).
    pub brier: f64,
    /// The Brier score of always predicting the observed base rate, for comparison.
    pub brier_base_rate: f64,
    /// Ten equal-width bins.
    pub bins: Vec<Bin>,
}

impl Calibration {
    /// Of `(probability, escalated)` pairs.
    pub fn of(pairs: &[(f64, bool)]) -> Calibration {
        const BINS: usize = 10;
        let n = pairs.len();
        if n == 0 {
            return Calibration::default();
        }
        let y = |e: bool| if e { 1.0 } else { 0.0 };
        let base = pairs.iter().filter(|(_, e)| *e).count() as f64 / n as f64;
        let brier = pairs.iter().map(|(p, e)| (p - y(*e)).powi(2)).sum::<f64>() / n as f64;
        let brier_base = pairs
            .iter()
            .map(|(_, e)| (base - y(*e)).powi(2))
            .sum::<f64>()
            / n as f64;
        let mut sums = [(0u64, 0.0, 0.0); BINS];
        for (p, e) in pairs {
            let p = p.clamp(0.0, 1.0);
            let i = ((p * BINS as f64) as usize).min(BINS - 1);
            sums[i].0 += 1;
            sums[i].1 += p;
            sums[i].2 += y(*e);
        }
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        Calibration {
            cases: n as u64,
            brier: round(brier),
            brier_base_rate: round(brier_base),
            bins: sums
                .iter()
                .enumerate()
                .map(|(i, (cases, p, e))| Bin {
                    from: i as f64 / BINS as f64,
                    to: (i + 1) as f64 / BINS as f64,
                    cases: *cases,
                    mean_p: if *cases > 0 {
                        round(p / *cases as f64)
                    } else {
                        0.0
                    },
                    escalated_rate: if *cases > 0 {
                        round(e / *cases as f64)
                    } else {
                        0.0
                    },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_base_rate_predictions_score_as_expected() {
        let perfect = Calibration::of(&[(1.0, true), (0.0, false), (0.0, false), (0.0, false)]);
        assert_eq!(perfect.brier, 0.0);
        assert_eq!(perfect.brier_base_rate, 0.1875);
        assert_eq!(perfect.bins[9].cases, 1);
        assert_eq!(perfect.bins[9].escalated_rate, 1.0);
        assert_eq!(perfect.bins[0].cases, 3);
        let flat = Calibration::of(&[(0.25, true), (0.25, false), (0.25, false), (0.25, false)]);
        assert_eq!(flat.brier, flat.brier_base_rate);
        assert_eq!(flat.bins[2].mean_p, 0.25);
        assert_eq!(Calibration::of(&[]).cases, 0);
    }
}
