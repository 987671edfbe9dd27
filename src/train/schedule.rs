//! Learning-rate and EMA schedules.

use std::f64::consts::PI;

/// Linear warmup from 0 over `warmup_steps`, then cosine decay to 0 at `total_steps`
/// (BYOL's schedule). With no warmup and `cosine` off the rate is constant.
#[derive(Clone, Copy, Debug)]
pub struct LrSchedule {
    pub base: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub cosine: bool,
}

impl LrSchedule {
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if !self.cosine || self.total_steps <= self.warmup_steps {
            return self.base;
        }
        let progress =
            (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64;
        self.base * 0.5 * (1.0 + (PI * progress.min(1.0)).cos())
    }
}

/// BYOL's target decay: tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2, rising to 1.
#[derive(Clone, Copy, Debug)]
pub struct TauSchedule {
    pub base: f64,
    pub total_steps: usize,
    pub cosine: bool,
}

impl TauSchedule {
    pub fn at(&self, step: usize) -> f64 {
        if !self.cosine || self.total_steps == 0 {
            return self.base;
        }
        let k = (step as f64 / self.total_steps as f64).min(1.0);
        1.0 - (1.0 - self.base) * ((PI * k).cos() + 1.0) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule {
            base: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            cosine: true,
        };
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(60) - 0.5).abs() < 1e-12);
        assert!(s.at(110).abs() < 1e-12);
        let flat = LrSchedule {
            base: 0.8,
            warmup_steps: 0,
            total_steps: 100,
            cosine: false,
        };
        assert_eq!(flat.at(57), 0.8);
    }

    #[test]
    fn tau_rises_from_base_to_one() {
        let t = TauSchedule {
            base: 0.99,
            total_steps: 100,
            cosine: true,
        };
        assert!((t.at(0) - 0.99).abs() < 1e-12);
        assert!((t.at(50) - 0.995).abs() < 1e-12);
        assert!((t.at(100) - 1.0).abs() < 1e-12);
        assert_eq!(
            TauSchedule {
                base: 0.996,
                total_steps: 100,
                cosine: false
            }
            .at(70),
            0.996
        );
    }
}
