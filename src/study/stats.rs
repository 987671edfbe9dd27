//! What several seeds say: mean, sample standard deviation, and paired differences with a 95%
//! Student-t interval (rows of one seed share initialization, data order and augmentations, so
//! variants are compared seed by seed).

use serde::Serialize;

/// Mean, sample standard deviation (n − 1; 0 for one value) and every value, in seed order.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub values: Vec<f64>,
}

impl Spread {
    /// None when there are no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Spread {
            mean,
            sd,
            values: values.to_vec(),
        })
    }
}

/// The mean of paired differences a_s − b_s and its 95% interval (mean ± t₀.₉₇₅,ₙ₋₁ · sd / √n).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PairedDifference {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    /// Seeds that both sides have.
    pub pairs: usize,
}

impl PairedDifference {
    /// None with fewer than two pairs (no interval). Pairs are (a, b) of one seed.
    pub fn of(pairs: &[(f64, f64)]) -> Option<PairedDifference> {
        if pairs.len() < 2 {
            return None;
        }
        let d: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
        let s = Spread::of(&d)?;
        let half = t_975(d.len() - 1) * s.sd / (d.len() as f64).sqrt();
        Some(PairedDifference {
            mean: s.mean,
            low: s.mean - half,
            high: s.mean + half,
            pairs: d.len(),
        })
    }

    /// Whether the interval excludes zero.
    pub fn separated(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (df ≥ 1; tabulated to 30, then
/// the normal 1.96 plus the first-order correction 2.4 / df).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_paired_interval() {
        let s = Spread::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.sd), (2.0, 1.0));
        assert_eq!(Spread::of(&[4.0]).unwrap().sd, 0.0);
        assert!(Spread::of(&[]).is_none());
        // Differences 1, 2, 3: mean 2, sd 1, half-width 4.303 / sqrt(3).
        let d = PairedDifference::of(&[(2.0, 1.0), (5.0, 3.0), (3.0, 0.0)]).unwrap();
        let half = 4.303 / 3f64.sqrt();
        assert!((d.low - (2.0 - half)).abs() < 1e-12 && (d.high - (2.0 + half)).abs() < 1e-12);
        assert!(!d.separated(), "2 ± 2.48 includes zero");
        let tight = PairedDifference::of(&[(2.0, 1.0), (2.1, 1.0), (1.9, 1.0)]).unwrap();
        assert!(tight.separated());
        assert!(PairedDifference::of(&[(1.0, 0.0)]).is_none());
        assert!(t_975(40) > 1.96 && t_975(40) < t_975(30));
    }
}
