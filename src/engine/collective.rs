//! What the engine needs of the other processes of a data-parallel run: sums across ranks; and
//! over which images batch norm takes its statistics (all ranks, one rank, or slices of a batch).
//!
//! The trait lives here, at the bottom, so that ops (synchronized batch norm) and the trainer (the
//! gradient all-reduce) can use it; `crate::dist` implements it over MPI above them.

use super::Engine;
use crate::error::Result;
use std::rc::Rc;

/// The ranks of a data-parallel run. Every rank makes the same calls in the same order.
pub trait Collective {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sum of `data` over every rank, in place, on every rank.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()>;
    /// The same in f64 (statistics that must not lose digits).
    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Every rank's `value`, by rank.
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>>;
    /// Collectives so far and the seconds spent in them (waiting for slower ranks included).
    fn time_spent(&self) -> (u64, f64) {
        (0, 0.0)
    }
}

/// The run an engine belongs to: its ranks and whether batch norm sees the global batch.
#[derive(Clone)]
pub struct Distributed {
    pub world: Rc<dyn Collective>,
    /// Batch norm all-reduces its statistics and backward sums (`--sync-bn`).
    pub sync_batch_norm: bool,
}

impl Engine {
    /// Makes this engine one rank of a data-parallel run (set once, before training).
    pub fn set_distributed(&self, d: Distributed) {
        *self.0.distributed.borrow_mut() = Some(d);
    }

    /// The run's ranks, when there is more than one.
    pub fn collective(&self) -> Option<Rc<dyn Collective>> {
        let d = self.0.distributed.borrow();
        d.as_ref()
            .filter(|d| d.world.size() > 1)
            .map(|d| d.world.clone())
    }

    /// The ranks batch norm reduces over, when `--sync-bn` is on and there is more than one.
    pub fn batch_norm_ranks(&self) -> Option<Rc<dyn Collective>> {
        let d = self.0.distributed.borrow();
        d.as_ref()
            .filter(|d| d.sync_batch_norm && d.world.size() > 1)
            .map(|d| d.world.clone())
    }

    /// Turns synchronized batch norm on or off for the run's ranks (each training config says).
    pub fn set_sync_batch_norm(&self, on: bool) {
        if let Some(d) = self.0.distributed.borrow_mut().as_mut() {
            d.sync_batch_norm = on;
        }
    }

    /// Makes training-mode batch norm normalize each of `groups` equal slices of every batch on
    /// its own (ghost batch norm): one process that sees what R ranks without `--sync-bn` see.
    pub fn set_batch_norm_groups(&self, groups: usize) {
        self.0.batch_norm_groups.set(groups.max(1));
    }

    /// The slices training-mode batch norm normalizes separately (1: the whole batch).
    pub fn batch_norm_groups(&self) -> usize {
        self.0.batch_norm_groups.get()
    }

    /// This process's rank (0 when not distributed).
    pub fn rank(&self) -> usize {
        self.collective().map_or(0, |w| w.rank())
    }

    /// How many ranks the run has (1 when not distributed).
    pub fn ranks(&self) -> usize {
        self.collective().map_or(1, |w| w.size())
    }
}
