//! Timing: GPU time of recorded work (timestamp queries, or the wall clock around a sync) for
//! benches, and the per-kernel profile table that `BYOL_PROFILE=1` fills.

use super::recorder::open_pass;
use super::Engine;
use crate::error::Result;

impl Engine {
    /// The profile table (kernel, calls, total seconds), slowest first; empties it.
    pub fn profile_report(&self) -> Vec<(String, u64, f64)> {
        let mut v: Vec<(String, u64, f64)> = self
            .0
            .profile
            .borrow_mut()
            .drain()
            .map(|(k, (n, t))| (k, n, t))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// Runs `f` (which records dispatches) and measures the GPU time of what it recorded, with
    /// timestamp queries where the adapter has them and the wall clock around a sync otherwise.
    /// Returns `f`'s result and the seconds, and whether timestamps were used.
    pub fn time_gpu<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, f64, bool)> {
        self.sync()?;
        let has_ts = self
            .0
            .gpu
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY);
        if !has_ts {
            let t0 = std::time::Instant::now();
            let r = f()?;
            self.sync()?;
            return Ok((r, t0.elapsed().as_secs_f64(), false));
        }
        let device = &self.0.gpu.device;
        let query = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        {
            // Open the timed pass now, so copies recorded before the first dispatch count too.
            let mut rec = self.0.rec.borrow_mut();
            rec.timer = Some((query.clone(), false));
            rec.pass = None;
            if rec.encoder.is_none() {
                rec.encoder = Some(device.create_command_encoder(&Default::default()));
            }
            open_pass(&mut rec);
        }
        let submits_before = self.record_stats().submits;
        let t0 = std::time::Instant::now();
        let r = f()?;
        let split = self.record_stats().submits != submits_before;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timer resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        {
            let mut rec = self.0.rec.borrow_mut();
            rec.timer = None;
            rec.pass = None;
            if let Some(enc) = rec.encoder.as_mut() {
                enc.resolve_query_set(&query, 0..2, &resolve, 0);
            }
        }
        let bytes = self.read(&resolve, 0, 16)?;
        let wall = t0.elapsed().as_secs_f64();
        if split {
            // The work spanned several submits: one pass's timestamps would undercount it.
            return Ok((r, wall, false));
        }
        let ticks: [u64; 2] = bytemuck::pod_read_unaligned(&bytes);
        let period_ns = self.0.gpu.queue.get_timestamp_period() as f64;
        let secs = ticks[1].saturating_sub(ticks[0]) as f64 * period_ns * 1e-9;
        Ok((r, secs, true))
    }
}
