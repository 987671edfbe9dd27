//! [`Collective`] over MPI (the `mpi` crate: Open MPI or MPICH underneath). Every call is a
//! blocking collective on MPI_COMM_WORLD; a watchdog thread ends the process when one waits
//! longer than `BYOL_MPI_TIMEOUT` seconds (default 1800: rank 0 evaluating while the others
//! wait must fit), so a rank that hangs never hangs the run forever. A rank that dies is seen by
//! the launcher, which stops the others.

use crate::engine::Collective;
use crate::error::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds a collective may wait before the watchdog ends the process.
const DEFAULT_TIMEOUT_S: u64 = 1800;

pub struct MpiWorld {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// When the collective in progress began (ms since the epoch), 0 when none is.
    waiting_since: Arc<AtomicU64>,
    /// Collectives so far and their total wall time.
    spent: std::cell::Cell<(u64, f64)>,
    /// Finalizes MPI when the world is dropped; declared last, so it is dropped last.
    _universe: Universe,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn timeout() -> Result<Duration> {
    match std::env::var("BYOL_MPI_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_S)),
        Ok(s) => match s.parse::<f64>() {
            Ok(t) if t > 0.0 && t.is_finite() => Ok(Duration::from_secs_f64(t)),
            _ => Err(Error::Invalid(format!(
                "BYOL_MPI_TIMEOUT={s:?} must be a positive number of seconds"
            ))),
        },
    }
}

impl MpiWorld {
    pub fn init() -> Result<MpiWorld> {
        let limit = timeout()?;
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Device("MPI was initialized twice in one process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let waiting_since = Arc::new(AtomicU64::new(0));
        if size > 1 {
            let since = waiting_since.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                let t = since.load(Ordering::SeqCst);
                if t != 0 && now_ms().saturating_sub(t) > limit.as_millis() as u64 {
                    eprintln!(
                        "error (rank {rank} of {size}): no answer from the other ranks for {:.0} s \
                         (one died or hangs; BYOL_MPI_TIMEOUT sets the limit): stopping",
                        limit.as_secs_f64()
                    );
                    // Ends this process without MPI_Finalize; the launcher then stops the rest.
                    std::process::exit(3);
                }
            });
        }
        Ok(MpiWorld {
            world,
            rank,
            size,
            waiting_since,
            spent: std::cell::Cell::new((0, 0.0)),
            _universe: universe,
        })
    }

    /// Element-wise sum over the ranks, in place (MPI needs a separate send buffer).
    fn sum_in_place<T: mpi::datatype::Equivalence + Clone>(&self, data: &mut [T]) -> Result<()> {
        let send = data.to_vec();
        self.guarded(|| {
            self.world
                .all_reduce_into(&send[..], data, SystemOperation::sum())
        });
        Ok(())
    }

    /// Runs one collective under the watchdog.
    fn guarded<R>(&self, f: impl FnOnce() -> R) -> R {
        self.waiting_since.store(now_ms().max(1), Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        let r = f();
        self.waiting_since.store(0, Ordering::SeqCst);
        let (calls, secs) = self.spent.get();
        self.spent
            .set((calls + 1, secs + t0.elapsed().as_secs_f64()));
        r
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        self.sum_in_place(data)
    }

    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()> {
        self.sum_in_place(data)
    }

    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        let mut all = vec![0u64; self.size];
        self.guarded(|| self.world.all_gather_into(&value, &mut all[..]));
        Ok(all)
    }

    fn time_spent(&self) -> (u64, f64) {
        self.spent.get()
    }
}

/// Stops every rank of the run (MPI_Abort on the world).
pub fn abort(code: i32) -> ! {
    // SAFETY: MPI_Abort takes the world communicator, which MPI keeps valid while initialized;
    // it does not return.
    unsafe {
        mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
    }
    std::process::abort()
}
