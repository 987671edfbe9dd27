//! Data-parallel training over MPI: `mpirun -np R byol train ...` (a build with `--features mpi`).
//!
//! Every rank holds the whole model, trains on its 1/R of each global batch and all-reduces the
//! gradient arenas once per step (`Trainer::all_reduce_gradients`), so all ranks take the same
//! update; `--sync-bn` makes batch norm reduce over the global batch too (`ops::batch_norm`).
//! Rank 0 alone writes the run directory, prints and evaluates. What every rank must agree on
//! is checked at start ([`check_same_run`]); a rank that fails takes the others down with it
//! ([`fail`]), and a collective that waits too long ends the process (`BYOL_MPI_TIMEOUT`).

#[cfg(feature = "mpi")]
mod mpi_world;

use crate::engine::Collective;
use crate::error::{Error, Result};
use crate::ops::BatchNormState;
use crate::tensor::Tensor;
use std::rc::Rc;

/// Environment variables by which MPI launchers tell a process its world size.
const LAUNCHER_SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// The world size a launcher (mpirun, srun) announced to this process, if any.
fn launched_ranks() -> Option<usize> {
    LAUNCHER_SIZE_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// This process's place in a data-parallel run: `None` for a plain single process (and for a
/// world of one). Starts MPI in a build with the `mpi` feature; without it, a process that a
/// launcher started as one of several ranks is an error, not R independent runs.
pub fn init() -> Result<Option<Rc<dyn Collective>>> {
    #[cfg(feature = "mpi")]
    {
        let world = mpi_world::MpiWorld::init()?;
        if world.size() > 1 {
            return Ok(Some(Rc::new(world)));
        }
        match launched_ranks() {
            // Each process would train alone, R runs racing for one directory.
            Some(n) if n > 1 => Err(Error::Invalid(format!(
                "the launcher started {n} ranks but MPI sees a world of 1: byol was built \
                 against a different MPI library than this mpirun's"
            ))),
            _ => Ok(None),
        }
    }
    #[cfg(not(feature = "mpi"))]
    match launched_ranks() {
        Some(n) if n > 1 => Err(Error::Invalid(format!(
            "this byol was built without MPI but was started as one of {n} ranks (mpirun): \
             rebuild with `cargo build --release --features mpi` (README, Several GPUs)"
        ))),
        _ => Ok(None),
    }
}

/// A 64-bit FNV-1a digest (what ranks compare: configs, versions).
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Fails unless every rank runs the same `what` (a config's JSON, with the code version).
pub fn check_same_run(world: &dyn Collective, what: &str) -> Result<()> {
    let mine = digest(format!("{what}\nbyol {}", env!("CARGO_PKG_VERSION")).as_bytes());
    let all = world.all_gather_u64(mine)?;
    let differ: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, &d)| d != all[0])
        .map(|(r, _)| r.to_string())
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "rank(s) {} of {} run a different configuration or byol version than rank 0 \
         (every rank must get the same flags and the same build)",
        differ.join(", "),
        all.len()
    )))
}

/// Replaces each of `tensors` by its mean over the ranks: one read-back per tensor, ONE
/// all-reduce over all of them, one upload per tensor.
pub fn mean_in_place(world: &dyn Collective, tensors: &[&Tensor]) -> Result<()> {
    let mut flat = Vec::new();
    for t in tensors {
        flat.extend(t.to_vec()?);
    }
    world.all_reduce_sum(&mut flat)?;
    let scale = 1.0 / world.size() as f32;
    flat.iter_mut().for_each(|v| *v *= scale);
    let mut at = 0;
    for t in tensors {
        t.write(&flat[at..at + t.numel()])?;
        at += t.numel();
    }
    Ok(())
}

/// Averages every batch-norm running statistic over the ranks. Each rank updates its running
/// statistics from its own shard; their mean is what a single process that normalized each shard
/// separately, and kept the mean of the shards' statistics, would hold (the update is linear, so
/// averaging before a checkpoint equals averaging every step). With `--sync-bn` every rank holds
/// the same values already and this changes nothing.
pub fn average_running_stats(world: &dyn Collective, states: &[&BatchNormState]) -> Result<()> {
    let tensors: Vec<&Tensor> = states
        .iter()
        .flat_map(|s| [&s.running_mean, &s.running_var])
        .collect();
    mean_in_place(world, &tensors)
}

/// One step's decisions, made the same on every rank in one small all-reduce: each of
/// `rank0` is true where rank 0's is (a checkpoint or a stop must happen at the same step
/// everywhere, and only rank 0's clock and Ctrl-C decide); `any` is true on every rank if it is
/// on one (a rank whose loss diverged stops them all at this step).
pub fn step_flags<const N: usize>(
    world: &dyn Collective,
    rank0: [bool; N],
    any: bool,
) -> Result<([bool; N], bool)> {
    let mut v = vec![0.0f32; N + 1];
    if world.rank() == 0 {
        for (x, f) in v.iter_mut().zip(rank0) {
            *x = f as u8 as f32;
        }
    }
    v[N] = any as u8 as f32;
    world.all_reduce_sum(&mut v)?;
    Ok((std::array::from_fn(|i| v[i] > 0.5), v[N] > 0.5))
}

/// Rank 0's decisions alone (see [`step_flags`]).
pub fn rank0_flags<const N: usize>(world: &dyn Collective, flags: [bool; N]) -> Result<[bool; N]> {
    Ok(step_flags(world, flags, false)?.0)
}

/// The mean over ranks of per-rank means (each rank's shard is the same size).
pub fn mean_over_ranks(world: &dyn Collective, values: &mut [f64]) -> Result<()> {
    world.all_reduce_sum_f64(values)?;
    let n = world.size() as f64;
    values.iter_mut().for_each(|v| *v /= n);
    Ok(())
}

/// What a failing rank does: under MPI it aborts the whole run (the other ranks would wait in
/// their next collective forever); otherwise it returns to the caller.
pub fn fail(world: Option<&Rc<dyn Collective>>, message: &str) {
    #[cfg(feature = "mpi")]
    if let Some(w) = world {
        eprintln!("error (rank {} of {}): {message}", w.rank(), w.size());
        mpi_world::abort(1);
    }
    #[cfg(not(feature = "mpi"))]
    let _ = (world, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_tells_configs_apart() {
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(digest(b"lr 0.1"), digest(b"lr 0.2"));
    }
}
