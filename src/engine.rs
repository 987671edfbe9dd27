//! The engine: one device, its buffer pool, its pipeline cache, the command recorder and the tape.
//!
//! Ops record dispatches into one open compute pass; nothing is submitted until a sync point (a
//! download, `flush`/`sync`, or `max_pending_dispatches`). Each dispatch's parameters go into a
//! CPU-side arena that is written to one uniform buffer right before the submit, so a step of a
//! thousand dispatches costs one `write_buffer` and one `submit`, not a thousand.

use crate::autograd::Node;
use crate::device::{self, Gpu};
use crate::error::{Error, Result};
use crate::kernels::{BindingKind, Kernel, KernelCache};
use crate::pool::{BufferPool, PoolStats};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Which matmul kernel the engine uses; `Auto` picks per adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulVariant {
    #[default]
    Auto,
    /// Barrier-free, register-blocked: best on software Vulkan where barriers are costly.
    Blocked,
    /// Workgroup-memory tiles with register blocking: best on real GPUs.
    Tiled,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Substring of the adapter name; `None` means the best adapter (or env `BYOL_ADAPTER`).
    pub adapter: Option<String>,
    /// Fill every buffer an op allocates with NaN before the op writes it (tests use this).
    pub poison_outputs: bool,
    pub matmul: MatmulVariant,
    /// Submit after this many recorded dispatches even without a sync point.
    pub max_pending_dispatches: usize,
    /// Lower the per-binding byte limit below the adapter's (tests use it to exercise the paths
    /// that split large tensors).
    pub binding_limit: Option<u64>,
    /// Wait for the GPU after every dispatch and add its wall time to a per-kernel table
    /// (`Engine::profile_report`). Slow: for finding where time goes, never for training.
    /// Env `BYOL_PROFILE=1` turns it on too.
    pub profile: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            adapter: None,
            poison_outputs: false,
            matmul: MatmulVariant::Auto,
            max_pending_dispatches: 4096,
            binding_limit: None,
            profile: std::env::var("BYOL_PROFILE").is_ok_and(|v| v == "1"),
        }
    }
}

/// Bytes reserved per dispatch in the parameter arena (covers every adapter's uniform offset alignment).
const PARAM_SLOT: u64 = 256;
/// Largest parameter block a kernel may take, in 32-bit words.
pub const MAX_PARAM_WORDS: usize = 32;

struct Recorder {
    /// Set while `time_gpu` runs: the first pass writes the begin timestamp, every pass the end one,
    /// so the span covers all passes and the copies between them.
    timer: Option<(wgpu::QuerySet, bool)>,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    params: Vec<u8>,
    params_buf: wgpu::Buffer,
    pending: usize,
}

/// Counters of recorded work, for tests and benches.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordStats {
    pub dispatches: u64,
    pub submits: u64,
}

impl EngineInner {
    /// A pooled buffer without poisoning (for uploads, which overwrite it anyway).
    pub(crate) fn pool_acquire(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let bytes = bytes.max(4);
        if bytes > self.gpu.limits.max_buffer_size {
            return Err(Error::Device(format!(
                "a tensor of {bytes} bytes exceeds this adapter's largest buffer ({} bytes)",
                self.gpu.limits.max_buffer_size
            )));
        }
        Ok(self.pool.borrow_mut().acquire(&self.gpu.device, bytes))
    }
}

pub(crate) struct EngineInner {
    pub(crate) gpu: Gpu,
    pool: RefCell<BufferPool>,
    kernels: RefCell<KernelCache>,
    rec: RefCell<Recorder>,
    staging: RefCell<HashMap<u64, Vec<wgpu::Buffer>>>,
    pub(crate) tape: RefCell<Vec<Node>>,
    grad_enabled: Cell<bool>,
    next_id: Cell<u64>,
    stats: Cell<RecordStats>,
    /// Per-kernel (calls, seconds) when profiling.
    profile: RefCell<HashMap<String, (u64, f64)>>,
    errors: Arc<Mutex<Vec<String>>>,
    options: EngineOptions,
}

/// A cheap handle to the engine; every tensor holds one.
#[derive(Clone)]
pub struct Engine(pub(crate) Rc<EngineInner>);

/// A storage buffer range to bind: `(buffer, byte offset, byte size)`.
#[derive(Clone, Copy)]
pub struct BufSlice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Result<Engine> {
        let filter = device::adapter_filter(options.adapter.as_deref());
        let gpu = device::open(filter.as_deref())?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        // Device errors are collected and reported at the next sync point instead of panicking.
        gpu.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = sink.lock() {
                    v.push(e.to_string());
                }
            }));
        let max_pending = options.max_pending_dispatches.max(1);
        let params_buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: PARAM_SLOT * max_pending as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if gpu.limits.min_uniform_buffer_offset_alignment as u64 > PARAM_SLOT {
            return Err(Error::Device(format!(
                "uniform offset alignment {} exceeds {PARAM_SLOT}",
                gpu.limits.min_uniform_buffer_offset_alignment
            )));
        }
        let mut options = options;
        options.max_pending_dispatches = max_pending;
        Ok(Engine(Rc::new(EngineInner {
            gpu,
            pool: RefCell::new(BufferPool::new()),
            kernels: RefCell::new(KernelCache::default()),
            rec: RefCell::new(Recorder {
                timer: None,
                encoder: None,
                pass: None,
                params: Vec::new(),
                params_buf,
                pending: 0,
            }),
            staging: RefCell::new(HashMap::new()),
            tape: RefCell::new(Vec::new()),
            grad_enabled: Cell::new(true),
            next_id: Cell::new(1),
            stats: Cell::new(RecordStats::default()),
            profile: RefCell::new(HashMap::new()),
            errors,
            options,
        })))
    }

    /// The engine with default options (best adapter, or `BYOL_ADAPTER`).
    pub fn default_engine() -> Result<Engine> {
        Engine::new(EngineOptions::default())
    }

    pub fn gpu(&self) -> &Gpu {
        &self.0.gpu
    }

    pub fn options(&self) -> &EngineOptions {
        &self.0.options
    }

    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.0.gpu.info.name, self.0.gpu.info.backend)
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.0.pool.borrow().stats()
    }

    pub fn record_stats(&self) -> RecordStats {
        self.0.stats.get()
    }

    pub fn kernel_count(&self) -> usize {
        self.0.kernels.borrow().len()
    }

    pub(crate) fn next_id(&self) -> u64 {
        let id = self.0.next_id.get();
        self.0.next_id.set(id + 1);
        id
    }

    /// The matmul variant in force for this adapter.
    pub fn matmul_variant(&self) -> MatmulVariant {
        match self.0.options.matmul {
            MatmulVariant::Auto if self.0.gpu.is_software() => MatmulVariant::Blocked,
            MatmulVariant::Auto => MatmulVariant::Tiled,
            v => v,
        }
    }

    // ---- gradient mode -------------------------------------------------------------------------

    pub fn grad_enabled(&self) -> bool {
        self.0.grad_enabled.get()
    }

    /// Ops run while the guard lives are not recorded on the tape.
    pub fn no_grad(&self) -> NoGradGuard {
        let prev = self.0.grad_enabled.replace(false);
        NoGradGuard {
            engine: self.clone(),
            prev,
        }
    }

    /// Drops every recorded node (for a forward pass that will not be differentiated).
    pub fn clear_tape(&self) {
        let nodes = std::mem::take(&mut *self.0.tape.borrow_mut());
        drop(nodes);
    }

    pub fn tape_len(&self) -> usize {
        self.0.tape.borrow().len()
    }

    // ---- memory --------------------------------------------------------------------------------

    /// A pooled buffer of at least `bytes`; poisoned with NaN when the options ask for it.
    pub(crate) fn alloc(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let buf = self.0.pool_acquire(bytes)?;
        if self.0.options.poison_outputs {
            self.fill_raw(&buf, f32::NAN.to_bits())?;
        }
        Ok(buf)
    }

    pub(crate) fn release(&self, buf: wgpu::Buffer) {
        // The engine may be mid-borrow while a tensor drops inside an op; the pool borrow is short.
        self.0.pool.borrow_mut().release(buf);
    }

    /// Fills a whole buffer with one 32-bit pattern.
    pub(crate) fn fill_raw(&self, buf: &wgpu::Buffer, bits: u32) -> Result<()> {
        let words = buf.size() / 4;
        let chunk = self.max_binding_words();
        let mut start = 0;
        while start < words {
            let n = chunk.min(words - start);
            let slice = BufSlice {
                buffer: buf,
                offset: start * 4,
                size: n * 4,
            };
            self.dispatch_1d("elementwise", "fill", &[], &[n as u32, bits], &[slice], n)?;
            start += n;
        }
        Ok(())
    }

    /// The largest element count one binding may hold, rounded down to the storage offset alignment,
    /// so that ops can split bigger tensors into chunks that start at legal offsets.
    pub fn max_binding_words(&self) -> u64 {
        let align_words = (self.0.gpu.limits.min_storage_buffer_offset_alignment as u64 / 4).max(1);
        let bytes = self.0.gpu.max_binding_bytes();
        let words = self.0.options.binding_limit.map_or(bytes, |l| l.min(bytes)) / 4;
        (words / align_words) * align_words
    }

    // ---- recording -----------------------------------------------------------------------------

    /// Records one dispatch. `bufs` are the storage bindings in ascending binding order; `params`
    /// become the kernel's uniform at binding 0 (if it has one).
    pub fn dispatch(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u32],
        bufs: &[BufSlice],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let max_wg = self.0.gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max_wg) {
            return Err(Error::Shape(format!(
                "{shader}::{entry}: grid {workgroups:?} exceeds {max_wg} workgroups per dimension"
            )));
        }
        if workgroups.contains(&0) {
            return Ok(());
        }
        if params.len() > MAX_PARAM_WORDS {
            return Err(Error::Invalid(format!(
                "{shader}::{entry}: too many params"
            )));
        }
        let kernel =
            self.0
                .kernels
                .borrow_mut()
                .get(&self.0.gpu.device, shader, entry, constants)?;
        let storage_count = kernel
            .bindings
            .iter()
            .filter(|(_, k)| *k != BindingKind::Params)
            .count();
        if storage_count != bufs.len() {
            return Err(Error::Invalid(format!(
                "{shader}::{entry} takes {storage_count} buffers, got {}",
                bufs.len()
            )));
        }
        if self.0.rec.borrow().pending >= self.0.options.max_pending_dispatches {
            self.flush()?;
        }
        if self.0.options.profile {
            self.sync()?;
            let t0 = std::time::Instant::now();
            self.record_dispatch(&kernel, params, bufs, workgroups);
            self.sync()?;
            let mut prof = self.0.profile.borrow_mut();
            let e = prof.entry(format!("{shader}::{entry}")).or_default();
            e.0 += 1;
            e.1 += t0.elapsed().as_secs_f64();
            return Ok(());
        }
        self.record_dispatch(&kernel, params, bufs, workgroups);
        Ok(())
    }

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

    /// One-dimensional launch over `n` invocations of a 256-wide kernel, folded into a 2-D grid when
    /// `n` exceeds one dimension's limit; kernels recover the index as `gid.x + gid.y * nx * 256`.
    pub fn dispatch_1d(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u32],
        bufs: &[BufSlice],
        n: u64,
    ) -> Result<()> {
        let groups = n.div_ceil(256);
        let max = self.0.gpu.limits.max_compute_workgroups_per_dimension as u64;
        let (x, y) = if groups <= max {
            (groups, 1)
        } else {
            (max, groups.div_ceil(max))
        };
        let mut p = params.to_vec();
        p.push(x as u32); // the kernel's row pitch in workgroups
        self.dispatch(shader, entry, constants, &p, bufs, [x as u32, y as u32, 1])
    }

    fn record_dispatch(
        &self,
        kernel: &Kernel,
        params: &[u32],
        bufs: &[BufSlice],
        workgroups: [u32; 3],
    ) {
        let device = &self.0.gpu.device;
        let mut rec = self.0.rec.borrow_mut();
        let slot = rec.pending as u64 * PARAM_SLOT;
        let mut entries = Vec::with_capacity(bufs.len() + 1);
        let mut storage = bufs.iter();
        for (binding, kind) in &kernel.bindings {
            let resource = if *kind == BindingKind::Params {
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &rec.params_buf,
                    offset: 0,
                    size: std::num::NonZeroU64::new(PARAM_SLOT),
                })
            } else {
                let s = storage.next().expect("binding count checked");
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: s.buffer,
                    offset: s.offset,
                    size: std::num::NonZeroU64::new(s.size),
                })
            };
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource,
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut words = [0u32; (PARAM_SLOT / 4) as usize];
        words[..params.len()].copy_from_slice(params);
        rec.params.extend_from_slice(bytemuck::cast_slice(&words));
        if rec.encoder.is_none() {
            rec.encoder = Some(device.create_command_encoder(&Default::default()));
        }
        if rec.pass.is_none() {
            open_pass(&mut rec);
        }
        let pass = rec.pass.as_mut().expect("pass just opened");
        pass.set_pipeline(&kernel.pipeline);
        let offsets: &[u32] = if kernel.has_params {
            &[slot as u32]
        } else {
            &[]
        };
        pass.set_bind_group(0, &bind_group, offsets);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        rec.pending += 1;
        let mut s = self.0.stats.get();
        s.dispatches += 1;
        self.0.stats.set(s);
    }

    /// Records a buffer-to-buffer copy (ends the open compute pass).
    pub(crate) fn copy(
        &self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        let mut rec = self.0.rec.borrow_mut();
        rec.pass = None;
        if rec.encoder.is_none() {
            rec.encoder = Some(
                self.0
                    .gpu
                    .device
                    .create_command_encoder(&Default::default()),
            );
        }
        rec.encoder
            .as_mut()
            .expect("encoder just created")
            .copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes);
    }

    /// Submits everything recorded so far. Does not wait.
    pub fn flush(&self) -> Result<()> {
        let (encoder, params, params_buf) = {
            let mut rec = self.0.rec.borrow_mut();
            rec.pass = None; // ends the pass
            let enc = rec.encoder.take();
            let params = std::mem::take(&mut rec.params);
            rec.pending = 0;
            (enc, params, rec.params_buf.clone())
        };
        if let Some(encoder) = encoder {
            if !params.is_empty() {
                self.0.gpu.queue.write_buffer(&params_buf, 0, &params);
            }
            self.0.gpu.queue.submit([encoder.finish()]);
            let mut s = self.0.stats.get();
            s.submits += 1;
            self.0.stats.set(s);
        }
        self.0.pool.borrow_mut().on_submit();
        self.check_errors()
    }

    /// Submits and waits until the GPU is idle.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.0
            .gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()
    }

    fn check_errors(&self) -> Result<()> {
        let mut errs = self
            .0
            .errors
            .lock()
            .map_err(|_| Error::Device("error sink poisoned".into()))?;
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.join("; ");
        errs.clear();
        Err(Error::Device(msg))
    }

    /// Writes bytes into a buffer before the next submitted commands run. Flushes first, so commands
    /// recorded earlier still see the old contents.
    pub(crate) fn write(&self, buf: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.0.rec.borrow().encoder.is_some() {
            self.flush()?;
        }
        self.0.gpu.queue.write_buffer(buf, offset, bytes);
        Ok(())
    }

    /// Writes bytes into a buffer that no recorded command uses yet (a fresh allocation).
    pub(crate) fn write_fresh(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        self.0.gpu.queue.write_buffer(buf, 0, bytes);
    }

    /// Copies `bytes` from a buffer back to the CPU. The only place the engine waits for the GPU.
    pub(crate) fn read(&self, buf: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let padded = bytes.div_ceil(4) * 4;
        let class = crate::pool::size_class(padded);
        let staging = self
            .0
            .staging
            .borrow_mut()
            .get_mut(&class)
            .and_then(Vec::pop)
            .unwrap_or_else(|| {
                self.0.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staging"),
                    size: class,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
        self.copy(buf, offset, &staging, 0, padded);
        self.flush()?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..padded, move |r| {
            let _ = tx.send(r);
        });
        self.0
            .gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()?;
        rx.recv()
            .map_err(|_| Error::Device("buffer map callback never ran".into()))?
            .map_err(|e| Error::Device(format!("mapping a buffer for download failed: {e}")))?;
        let data = staging
            .get_mapped_range(0..padded)
            .map_err(|e| Error::Device(format!("reading a mapped buffer failed: {e:?}")))?
            [..bytes as usize]
            .to_vec();
        staging.unmap();
        self.0
            .staging
            .borrow_mut()
            .entry(class)
            .or_default()
            .push(staging);
        Ok(data)
    }
}

impl Engine {
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

/// Opens the recorder's compute pass (with the timer's timestamp writes while one is set).
fn open_pass(rec: &mut Recorder) {
    let begin_written = rec.timer.as_ref().is_some_and(|(_, started)| *started);
    let timestamp_writes = rec
        .timer
        .as_ref()
        .map(|(q, _)| wgpu::ComputePassTimestampWrites {
            query_set: q,
            beginning_of_pass_write_index: (!begin_written).then_some(0),
            end_of_pass_write_index: Some(1),
        });
    let enc = rec
        .encoder
        .as_mut()
        .expect("encoder exists before a pass opens");
    let pass = enc
        .begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes,
        })
        .forget_lifetime();
    rec.pass = Some(pass);
    if let Some((_, started)) = rec.timer.as_mut() {
        *started = true;
    }
}

/// Restores the previous gradient mode when dropped.
pub struct NoGradGuard {
    engine: Engine,
    prev: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        self.engine.0.grad_enabled.set(self.prev);
    }
}
