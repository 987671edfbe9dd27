//! The engine: one device, its buffer pool, its pipeline cache and the command recorder. It records
//! dispatches and knows nothing of autograd (the tape is `crate::tape`). Split by concern:
//! [`recorder`] (dispatches, copies, submits), [`transfer`] (uploads and downloads), [`timing`]
//! (GPU timestamps and the per-kernel profiler).
//!
//! Ops record dispatches into one open compute pass; nothing is submitted until a sync point (a
//! download, `flush`/`sync`, or `max_pending_dispatches`). Each dispatch's parameters go into a
//! CPU-side arena that is written to one uniform buffer right before the submit, so a step of a
//! thousand dispatches costs one `write_buffer` and one `submit`, not a thousand.

use crate::device::{self, Gpu};
use crate::error::{Error, Result};
use crate::kernels::{ElementwiseParams, KernelCache};
use crate::pool::{BufferPool, PoolStats};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod collective;
mod recorder;
mod textures;
mod timing;
mod transfer;
mod tune;

pub use collective::{Collective, Distributed};
pub use textures::OPERAND_TEXTURE_WIDTH;
pub use tune::{default_cache_file, ChoiceSource, KernelChoice, TuneMode};

/// Which matmul kernel the engine uses; `Auto` picks per adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulVariant {
    #[default]
    Auto,
    /// Barrier-free, register-blocked: best on software Vulkan where barriers are costly.
    Blocked,
    /// Workgroup-memory tiles with register blocking: best on real GPUs.
    Tiled,
    /// The vec4 barrier-free kernel with 8 x 16 blocks (falls back like `Blocked`).
    Vec4Wide,
    /// The vec4 barrier-free kernel in 64 x 1 workgroups (8 rows each: for products with few rows).
    Vec4Rows,
    /// Both of the above.
    Vec4RowsWide,
    /// Operands packed into textures, 8 x 8 blocks (matmul_texture.wgsl; falls back to the vec4
    /// kernel where the adapter has no such textures or the operands do not fit).
    Texture,
    /// Texture operands, 8 x 16 blocks.
    TextureWide,
    /// Texture operands, 8 x 16 blocks in 64 x 1 workgroups.
    TextureRowsWide,
}

/// How convolutions run; `Auto` picks per adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvVariant {
    #[default]
    Auto,
    /// Implicit GEMM: each product gathers its input window (conv2d.wgsl, or conv2d_tiled.wgsl
    /// with the tiled matmul).
    Direct,
    /// `Direct` with the forward and the input gradient reading the weight through 64 KiB uniform
    /// windows (barrier-free kernels only; elsewhere, and for the weight gradient, `Direct`).
    DirectUniform,
    /// Explicit GEMM: unfold (im2col), the matmul kernel, col2im (conv2d_unfold.wgsl).
    Unfold,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Substring of the adapter name; `None` means the best adapter (or env `BYOL_ADAPTER`).
    pub adapter: Option<String>,
    /// Take the n-th (modulo their number) of the adapters that match, of the best one's device
    /// type: data-parallel rank r opens the r-th GPU.
    pub adapter_slot: usize,
    /// Fill every buffer an op allocates with NaN before the op writes it (tests use this).
    pub poison_outputs: bool,
    /// Run the memory-bound passes (elementwise, batch norm) one element per invocation even
    /// where a binding allows four (vec4): tests force both forms.
    pub scalar_passes: bool,
    pub matmul: MatmulVariant,
    /// Forces one convolution kernel for every pass (tests force each); `Auto` lets the tuner
    /// or the passes' static defaults decide.
    pub conv: ConvVariant,
    /// Whether passes with several kernels time them (see [`tune`]).
    pub tune: TuneMode,
    /// The tune cache file; `None`: [`default_cache_file`].
    pub tune_cache: Option<std::path::PathBuf>,
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
            adapter_slot: 0,
            poison_outputs: false,
            scalar_passes: false,
            matmul: MatmulVariant::Auto,
            conv: ConvVariant::Auto,
            tune: TuneMode::Off,
            tune_cache: None,
            max_pending_dispatches: 4096,
            binding_limit: None,
            profile: std::env::var("BYOL_PROFILE").is_ok_and(|v| v == "1"),
        }
    }
}

/// Bytes of a uniform window a kernel reads an operand through (the shader's
/// `array<vec4<f32>, 4096>`): the smallest uniform binding limit WebGPU guarantees.
pub(crate) const UNIFORM_WINDOW_BYTES: u64 = 65536;

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
    /// Unique among the engines of this process (the tape keeps each engine's nodes by it).
    id: u64,
    next_id: Cell<u64>,
    stats: Cell<RecordStats>,
    /// Per-kernel (calls, seconds) when profiling.
    profile: RefCell<HashMap<String, (u64, f64)>>,
    errors: Arc<Mutex<Vec<String>>>,
    tuner: RefCell<tune::Tuner>,
    options: EngineOptions,
    /// Set when this engine is one rank of a data-parallel run (`collective`).
    distributed: RefCell<Option<Distributed>>,
    /// Training-mode batch norm normalizes each of this many slices of the batch on its own
    /// (ghost batch norm, `--bn-groups`); 1 is the whole batch.
    batch_norm_groups: Cell<usize>,
    /// The grow-only textures of the texture matmul's packed operands.
    textures: RefCell<textures::OperandTextures>,
    /// What a kernel's uniform weight window is bound to when the kernel reads storage instead.
    unused_window: std::cell::OnceCell<wgpu::Buffer>,
}

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

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
        let gpu = device::open_nth(filter.as_deref(), options.adapter_slot)?;
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
        let adapter_key = format!(
            "{} | {:?} | {} {} | shaders {:08x}",
            gpu.info.name,
            gpu.info.backend,
            gpu.info.driver,
            gpu.info.driver_info,
            crate::kernels::shaders_checksum()
        );
        let cache_file = options.tune_cache.clone().or_else(default_cache_file);
        let tuner = tune::Tuner::new(options.tune, cache_file, adapter_key);
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
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            next_id: Cell::new(1),
            stats: Cell::new(RecordStats::default()),
            profile: RefCell::new(HashMap::new()),
            errors,
            tuner: RefCell::new(tuner),
            options,
            distributed: RefCell::new(None),
            batch_norm_groups: Cell::new(1),
            textures: RefCell::new(textures::OperandTextures::default()),
            unused_window: std::cell::OnceCell::new(),
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

    /// This engine's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn next_id(&self) -> u64 {
        let id = self.0.next_id.get();
        self.0.next_id.set(id + 1);
        id
    }

    /// The matmul variant the options force (`Auto`: each product's tuned choice).
    pub fn matmul_option(&self) -> MatmulVariant {
        self.0.options.matmul
    }

    /// The kernel family in force for this adapter: `Tiled`, or the barrier-free `Blocked` (the
    /// direct convolutions follow it).
    pub fn matmul_variant(&self) -> MatmulVariant {
        match self.0.options.matmul {
            MatmulVariant::Auto if self.0.gpu.is_software() => MatmulVariant::Blocked,
            MatmulVariant::Auto | MatmulVariant::Tiled => MatmulVariant::Tiled,
            _ => MatmulVariant::Blocked,
        }
    }

    /// The convolution variant forced for every pass, or `Auto` (each pass's tuned choice).
    pub fn conv_variant(&self) -> ConvVariant {
        self.0.options.conv
    }

    /// Whether a memory-bound pass may read and write these bindings as vec4: each starts on a
    /// 16-byte boundary and holds whole vec4s, and the options do not force the scalar form.
    pub(crate) fn vec4_fits(&self, bufs: &[BufSlice]) -> bool {
        !self.0.options.scalar_passes && bufs.iter().all(|b| b.offset % 16 == 0 && b.size % 16 == 0)
    }

    /// A 64 KiB uniform binding for kernels whose uniform weight window goes unread (their
    /// `WEIGHT_UNIFORM` is off), made once.
    pub(crate) fn unused_uniform_window(&self) -> BufSlice<'_> {
        let bytes = UNIFORM_WINDOW_BYTES;
        let buffer = self.0.unused_window.get_or_init(|| {
            self.0.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("unused uniform window"),
                size: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: false,
            })
        });
        BufSlice {
            buffer,
            offset: 0,
            size: bytes,
        }
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
            let (entry, n_inv) = if self.vec4_fits(&[slice]) {
                ("fill4", n / 4)
            } else {
                ("fill", n)
            };
            let params = ElementwiseParams {
                n: n_inv as u32,
                a: bits,
            };
            self.dispatch_1d("elementwise", entry, &[], &params, &[slice], n_inv)?;
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
}
