//! Collapse diagnostics, accumulated on the GPU over an epoch and read once at its end:
//! mean cosine similarity of positive pairs (the two views of one image) and of negatives
//! (different images of a batch), and the std over the batch of l2-normalized outputs averaged
//! over dimensions (SimSiam's diagnostic: 1/sqrt(d) when healthy, 0 when collapsed).

use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

/// How many directions the rows of `z` [N, D] really spread over: the effective rank (RankMe: exp
/// of the entropy of the normalized singular values, on the GPU) of the rows minus their mean, i.e.
/// of the covariance spectrum. Centering keeps a common offset (post-ReLU features share a large
/// one) from reading as a single dominant direction; rows that all coincide (total collapse, up to
/// f32 noise: spread below 1e-6 of the mean square) give 1. Reads back two scalars and the rank.
pub fn centered_effective_rank(z: &Tensor) -> Result<f64> {
    let _ng = z.engine().no_grad();
    let mean = ops::mean_axis(z, 0)?;
    let centered = ops::bias_add(z, &ops::scale(&mean, -1.0)?)?;
    let spread = ops::sum(&ops::mul(&centered, &centered)?)?.item()? as f64;
    let square = ops::sum(&ops::mul(z, z)?)?.item()? as f64;
    if spread <= 1e-6 * square || spread == 0.0 {
        return Ok(1.0);
    }
    Ok(ops::effective_rank(&centered)?.item()? as f64)
}

#[derive(Default)]
pub struct Diagnostics {
    /// Running sums on the GPU: [sum of positive cosines, sum over all pairs of cosines].
    pos_sum: Option<Tensor>,
    all_sum: Option<Tensor>,
    pairs_pos: f64,
    pairs_neg: f64,
    /// Per-dimension mean and mean square of the last batch's normalized online outputs.
    last_moments: Option<(Tensor, Tensor)>,
    /// The last batch's normalized online outputs, for their effective rank.
    last_z: Option<Tensor>,
    loss_sum: Option<Tensor>,
    steps: usize,
}

/// An epoch's diagnostics so far, read back for a mid-epoch checkpoint; restored exactly (the f32
/// sums as they were), so a resumed epoch reports what the uninterrupted one would.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SavedDiagnostics {
    pub steps: usize,
    pub pairs_pos: f64,
    pub pairs_neg: f64,
    /// [positive cosines, all pairs' cosines, losses], summed over the epoch's steps.
    pub sums: [f32; 3],
    /// The last batch's per-dimension mean and mean square, and its outputs [N, D].
    pub last_moments: (Vec<f32>, Vec<f32>),
    pub last_z: (Vec<f32>, Vec<usize>),
}

/// What `Diagnostics::finish` reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiagnosticValues {
    pub loss: f64,
    pub cos_pos: f64,
    pub cos_neg: f64,
    pub output_std: f64,
    /// 1/sqrt(d): the std of uniformly spread unit vectors, for comparison.
    pub output_std_reference: f64,
    /// Effective rank (centered, see [`centered_effective_rank`]) of the last batch's normalized
    /// online outputs: 1 when every output is the same vector, up to min(batch - 1, d) when they
    /// use every direction equally.
    pub output_rank: f64,
}

fn accumulate(slot: &mut Option<Tensor>, v: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(prev) => ops::add(&prev, &v)?,
        None => v,
    });
    Ok(())
}

impl Diagnostics {
    /// Adds one step: z and k are the l2-normalized online and target outputs [N, D].
    pub fn add(&mut self, loss: &Tensor, z: &Tensor, k: &Tensor) -> Result<()> {
        let _ng = z.engine().no_grad();
        let n = z.shape()[0] as f64;
        let pos = ops::sum(&ops::mul(z, k)?)?;
        // sum_ij z_i·k_j = (sum_i z_i)·(sum_j k_j): all pairs without an N x N matrix.
        let all = ops::sum(&ops::mul(&ops::sum_axis(z, 0)?, &ops::sum_axis(k, 0)?)?)?;
        accumulate(&mut self.pos_sum, pos)?;
        accumulate(&mut self.all_sum, all)?;
        accumulate(&mut self.loss_sum, loss.clone())?;
        self.pairs_pos += n;
        self.pairs_neg += n * (n - 1.0);
        self.last_moments = Some((ops::mean_axis(z, 0)?, ops::mean_axis(&ops::mul(z, z)?, 0)?));
        self.last_z = Some(z.clone());
        self.steps += 1;
        Ok(())
    }

    /// Reads the epoch's running state back (for a checkpoint); changes nothing.
    pub fn save(&self) -> Result<SavedDiagnostics> {
        let read = |t: &Option<Tensor>| -> Result<f32> {
            Ok(t.as_ref().map(|t| t.item()).transpose()?.unwrap_or(0.0))
        };
        let moments = match &self.last_moments {
            Some((m, m2)) => (m.to_vec()?, m2.to_vec()?),
            None => (Vec::new(), Vec::new()),
        };
        let last_z = match &self.last_z {
            Some(z) => (z.to_vec()?, z.shape().to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        Ok(SavedDiagnostics {
            steps: self.steps,
            pairs_pos: self.pairs_pos,
            pairs_neg: self.pairs_neg,
            sums: [
                read(&self.pos_sum)?,
                read(&self.all_sum)?,
                read(&self.loss_sum)?,
            ],
            last_moments: moments,
            last_z,
        })
    }

    /// The state `save` read, back on the GPU.
    pub fn restore(engine: &crate::engine::Engine, saved: &SavedDiagnostics) -> Result<Self> {
        if saved.steps == 0 {
            return Ok(Diagnostics::default());
        }
        let scalar = |v: f32| Tensor::from_slice(engine, &[v], &[1]).map(Some);
        let d = saved.last_moments.0.len();
        let last_moments = if d > 0 && saved.last_moments.1.len() == d {
            Some((
                Tensor::from_slice(engine, &saved.last_moments.0, &[d])?,
                Tensor::from_slice(engine, &saved.last_moments.1, &[d])?,
            ))
        } else {
            None
        };
        let last_z = if saved.last_z.1.is_empty() {
            None
        } else {
            Some(Tensor::from_slice(
                engine,
                &saved.last_z.0,
                &saved.last_z.1,
            )?)
        };
        Ok(Diagnostics {
            pos_sum: scalar(saved.sums[0])?,
            all_sum: scalar(saved.sums[1])?,
            pairs_pos: saved.pairs_pos,
            pairs_neg: saved.pairs_neg,
            last_moments,
            last_z,
            loss_sum: scalar(saved.sums[2])?,
            steps: saved.steps,
        })
    }

    /// Reads back the three sums, the last batch's two moment vectors and its effective rank
    /// (eight small downloads, once per epoch: never inside a step) and resets.
    pub fn finish(&mut self) -> Result<DiagnosticValues> {
        let mut out = DiagnosticValues::default();
        if self.steps == 0 {
            return Ok(out);
        }
        let pos = self
            .pos_sum
            .take()
            .map(|t| t.item())
            .transpose()?
            .unwrap_or(0.0) as f64;
        let all = self
            .all_sum
            .take()
            .map(|t| t.item())
            .transpose()?
            .unwrap_or(0.0) as f64;
        let loss = self
            .loss_sum
            .take()
            .map(|t| t.item())
            .transpose()?
            .unwrap_or(0.0) as f64;
        out.loss = loss / self.steps as f64;
        out.cos_pos = pos / self.pairs_pos.max(1.0);
        out.cos_neg = (all - pos) / self.pairs_neg.max(1.0);
        if let Some((m, m2)) = self.last_moments.take() {
            let (m, m2) = (m.to_vec()?, m2.to_vec()?);
            let d = m.len() as f64;
            let std_sum: f64 = m
                .iter()
                .zip(&m2)
                .map(|(&a, &b)| ((b as f64) - (a as f64).powi(2)).max(0.0).sqrt())
                .sum();
            out.output_std = std_sum / d;
            out.output_std_reference = 1.0 / d.sqrt();
        }
        if let Some(z) = self.last_z.take() {
            out.output_rank = centered_effective_rank(&z)?;
        }
        *self = Diagnostics::default();
        Ok(out)
    }
}
