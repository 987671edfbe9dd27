//! Adapter discovery and device creation.
//!
//! Picks a discrete GPU first, then an integrated one, then anything else (a virtual GPU, then a CPU
//! implementation such as llvmpipe, through GL where it can: faster there than through Vulkan). The device is opened with the adapter's own limits, not WebGPU's
//! defaults, because a ResNet activation at batch 256 is larger than the default 128 MiB binding.

use crate::error::{Error, Result};

/// What an adapter is, as printed by `byol adapters`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

/// Texels per row of an operand texture (`engine::textures`): texel t of a packed operand sits at
/// (t % width, t / width), so an operand of any shape fits while it has at most width x (height
/// limit) texels.
pub const OPERAND_TEXTURE_WIDTH: u32 = 4096;

/// An open device with the facts kernels need to choose their variant.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Whether compute shaders may write rgba32float storage textures and fetch from rgba32float
    /// textures (the operand textures of matmul_texture.wgsl).
    pub operand_textures: bool,
}

impl Gpu {
    /// True for CPU implementations (llvmpipe, SwiftShader, WARP) where workgroup barriers are costly.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The largest number of bytes a single storage binding may cover.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}

/// Turns off Mesa's Vulkan device-select layer (unless the user set `NODEVICE_SELECT`): it
/// connects to a Wayland display to find the default GPU and, on a headless machine, prints
/// "error: XDG_RUNTIME_DIR is invalid or not set" twice on every command, while byol chooses its
/// adapter itself. Changes the environment: call it first thing in `main`, before any thread.
pub fn quiet_device_select_layer() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// The adapter name filter from `--adapter` or, failing that, the `BYOL_ADAPTER` environment variable.
pub fn adapter_filter(cli: Option<&str>) -> Option<String> {
    cli.map(str::to_owned)
        .or_else(|| std::env::var("BYOL_ADAPTER").ok())
        .filter(|s| !s.trim().is_empty())
}

/// An instance of only `backends`: creating one with GL in it already probes EGL, which on a
/// headless machine prints `XDG_RUNTIME_DIR` errors to the terminal.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    // Compute only: no presentation, no validation layers.
    desc.flags = wgpu::InstanceFlags::empty();
    wgpu::Instance::new(desc)
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn backend_rank(b: wgpu::Backend, t: wgpu::DeviceType) -> u8 {
    match b {
        // A CPU implementation reached through GL (Mesa's llvmpipe) runs the training step about
        // twice as fast as the same one through Vulkan (lavapipe): measured 17.6 s against 34.2 s
        // per step at the quick preset's size, 0.40 against 0.67 s at tiny, same machine and run.
        wgpu::Backend::Gl if t == wgpu::DeviceType::Cpu => 0,
        // Native compute backends first for GPUs; GL lacks storage-buffer features on many.
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        wgpu::Backend::Gl => 2,
        _ => 3,
    }
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
    }
}

fn adapters_of(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance(backends).enumerate_adapters(backends));
    adapters.retain(|a| {
        a.get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    });
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (
            type_rank(i.device_type),
            backend_rank(i.backend, i.device_type),
        )
    });
    adapters
}

/// Vulkan, Metal and DX12 adapters; GL ones too only where those give none that `filter` names,
/// or where the best of them is a CPU implementation (which GL may run faster, see
/// `backend_rank`). On a machine with a GPU, GL is never initialized: its EGL probing is slow and
/// noisy, and its compute support is the weakest.
fn candidates(filter: Option<&str>) -> Vec<wgpu::Adapter> {
    let primary = adapters_of(wgpu::Backends::PRIMARY);
    let matching: Vec<&wgpu::Adapter> = primary
        .iter()
        .filter(|a| filter.is_none_or(|f| adapter_matches(&a.get_info(), f)))
        .collect();
    let best_is_cpu = matching
        .first()
        .is_some_and(|a| a.get_info().device_type == wgpu::DeviceType::Cpu);
    if matching.is_empty() || best_is_cpu {
        adapters_of(wgpu::Backends::all())
    } else {
        primary
    }
}

/// A message telling the user how to get an adapter; shared by every "no adapter" path.
pub const NO_ADAPTER_HELP: &str = "install a GPU driver with Vulkan, Metal or DX12 support; \
on Linux without a GPU, install Mesa's software Vulkan (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`)";

/// Whether `filter` names this adapter: a case-insensitive part of its name, or exactly its backend
/// (`vulkan`, `metal`, `dx12`, `gl`), so the same device can be asked for through either backend.
fn adapter_matches(info: &wgpu::AdapterInfo, filter: &str) -> bool {
    let f = filter.trim().to_lowercase();
    info.name.to_lowercase().contains(&f) || format!("{:?}", info.backend).to_lowercase() == f
}

fn pick(adapters: Vec<wgpu::Adapter>, filter: Option<&str>) -> Result<(usize, wgpu::Adapter)> {
    pick_nth(adapters, filter, 0)
}

/// The `nth` (modulo their number) of the matching adapters of the best one's device type:
/// data-parallel rank r takes the r-th GPU, and all share one when there is only one.
fn pick_nth(
    adapters: Vec<wgpu::Adapter>,
    filter: Option<&str>,
    nth: usize,
) -> Result<(usize, wgpu::Adapter)> {
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let matching: Vec<usize> = (0..infos.len())
        .filter(|&i| filter.is_none_or(|f| adapter_matches(&infos[i], f)))
        .collect();
    let Some(&first) = matching.first() else {
        return pick_first(adapters, filter); // its error names what is available
    };
    let same_kind: Vec<usize> = matching
        .into_iter()
        .filter(|&i| infos[i].device_type == infos[first].device_type)
        .collect();
    let idx = same_kind[nth % same_kind.len()];
    let adapter = adapters.into_iter().nth(idx).expect("an index of the list");
    Ok((idx, adapter))
}

fn pick_first(
    adapters: Vec<wgpu::Adapter>,
    filter: Option<&str>,
) -> Result<(usize, wgpu::Adapter)> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter(format!(
            "no adapter with compute shaders was found; {NO_ADAPTER_HELP}"
        )));
    }
    match filter {
        None => Ok((0, adapters.into_iter().next().unwrap())),
        Some(f) => {
            let names: Vec<String> = adapters
                .iter()
                .map(|a| {
                    let i = a.get_info();
                    format!("{} ({:?})", i.name, i.backend)
                })
                .collect();
            adapters
                .into_iter()
                .enumerate()
                .find(|(_, a)| adapter_matches(&a.get_info(), f))
                .ok_or_else(|| {
                    Error::NoAdapter(format!(
                        "no adapter's name contains {f:?} and no backend is called so; available: {}",
                        names.join(", ")
                    ))
                })
        }
    }
}

/// The adapters byol chooses among, best first, and the index of the one `filter` would choose:
/// every Vulkan, Metal and DX12 adapter with compute support, and GL ones where those give none
/// (or none that `filter` names).
pub fn list_adapters(filter: Option<&str>) -> (Vec<AdapterSummary>, Option<usize>) {
    let adapters = candidates(filter);
    let list: Vec<AdapterSummary> = adapters.iter().map(|a| summary(&a.get_info())).collect();
    let chosen = pick(adapters, filter).ok().map(|(i, _)| i);
    (list, chosen)
}

/// Opens the best adapter (or the one whose name contains `filter`) with its own limits.
pub fn open(filter: Option<&str>) -> Result<Gpu> {
    open_nth(filter, 0)
}

/// Opens the `nth` of the adapters [`open`] could take (see `pick_nth`).
pub fn open_nth(filter: Option<&str>, nth: usize) -> Result<Gpu> {
    let (_, adapter) = pick_nth(candidates(filter), filter, nth)?;
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
    let rgba32 = adapter.get_texture_format_features(wgpu::TextureFormat::Rgba32Float);
    let operand_textures = rgba32
        .allowed_usages
        .contains(wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING)
        && rgba32
            .flags
            .contains(wgpu::TextureFormatFeatureFlags::STORAGE_WRITE_ONLY)
        && limits.max_texture_dimension_2d >= OPERAND_TEXTURE_WIDTH
        && limits.max_storage_textures_per_shader_stage >= 1
        && limits.max_sampled_textures_per_shader_stage >= 2;
    let desc = wgpu::DeviceDescriptor {
        label: Some("byol"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc))
        .map_err(|e| Error::Device(format!("could not open {}: {e}", info.name)))?;
    Ok(Gpu {
        device,
        queue,
        info,
        limits,
        features,
        operand_textures,
    })
}
