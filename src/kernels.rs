//! Shader registry and pipeline cache.
//!
//! Every WGSL file in `shaders/` is embedded here. Bind group layouts are derived from the shader
//! itself with naga's reflection (which globals each entry point uses, read-only or read-write), so
//! a kernel's Rust side only passes buffers in binding order. The uniform at `@binding(0)`, when a
//! kernel has one, is its parameter block and is bound with a dynamic offset into the step's
//! parameter arena.
//!
//! That parameter block is typed on both sides: each kernel family has a `#[repr(C)]` struct made
//! with [`kernel_params!`], its fields in the WGSL struct's order, and the cache checks it against
//! naga's reflection of the shader when it first builds a pipeline (`tests/kernel_abi.rs` checks
//! every one without a GPU). What shaders repeat (the 1-D launch index, the conv and matmul
//! parameter blocks) lives in `shaders/common.wgsl`, which is prepended to every shader.

use crate::error::{Error, Result};
use std::collections::HashMap;

/// A kernel's uniform parameter block as the CPU writes it: plain old data, one field per member
/// of the shader's struct, in order. `pitch`, the row pitch of a 1-D launch folded into a 2-D
/// grid, is not a field: `Engine::dispatch_1d` appends it.
pub trait KernelParams: bytemuck::Pod {
    /// Field names and their WGSL scalar types (`u32`, `i32`, `f32`), in order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a [`KernelParams`] struct: `kernel_params! { /// doc pub struct P { a: u32, b: f32 } }`.
macro_rules! kernel_params {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }
        impl $crate::kernels::KernelParams for $name {
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}

pub(crate) use kernel_params;

/// Which parameter struct a shader's kernels take, and how they are launched.
#[derive(Clone, Copy, Debug)]
pub struct KernelAbi {
    pub shader: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
    pub size: usize,
    /// Launched with `dispatch_1d`: the shader's struct ends with `pitch: u32`.
    pub pitch: bool,
}

impl KernelAbi {
    pub const fn of<P: KernelParams>(shader: &'static str, pitch: bool) -> KernelAbi {
        KernelAbi {
            shader,
            fields: P::FIELDS,
            size: std::mem::size_of::<P>(),
            pitch,
        }
    }
}

/// Checks that the uniform parameter block of `module` (the one at group 0, binding 0) has exactly
/// `fields`, then `pitch: u32` when `pitch` (a kernel launched on a 3-D grid may have one too: it
/// reads 0 there), by name, order, type and offset.
pub fn check_params_abi(
    shader: &str,
    module: &naga::Module,
    fields: &[(&str, &str)],
    pitch: bool,
) -> Result<()> {
    let bad = |m: String| Err(Error::Shader(format!("{shader}.wgsl parameter block: {m}")));
    let Some(var) = module.global_variables.iter().find_map(|(_, v)| {
        let at = v.binding.as_ref()?;
        (v.space == naga::AddressSpace::Uniform && at.group == 0 && at.binding == 0).then_some(v)
    }) else {
        return bad("no uniform at group 0, binding 0".into());
    };
    let naga::TypeInner::Struct { members, .. } = &module.types[var.ty].inner else {
        return bad("the uniform is not a struct".into());
    };
    let ends_with_pitch = members
        .last()
        .is_some_and(|m| m.name.as_deref() == Some("pitch"));
    let mut want: Vec<(&str, &str)> = fields.to_vec();
    if pitch || (ends_with_pitch && members.len() == fields.len() + 1) {
        want.push(("pitch", "u32"));
    }
    let got: Vec<(String, String, u32)> = members
        .iter()
        .map(|m| {
            let ty = match &module.types[m.ty].inner {
                naga::TypeInner::Scalar(s) => match (s.kind, s.width) {
                    (naga::ScalarKind::Uint, 4) => "u32",
                    (naga::ScalarKind::Sint, 4) => "i32",
                    (naga::ScalarKind::Float, 4) => "f32",
                    _ => "other scalar",
                },
                _ => "not a scalar",
            };
            (m.name.clone().unwrap_or_default(), ty.to_string(), m.offset)
        })
        .collect();
    let names = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect::<Vec<_>>()
    };
    let got_names: Vec<String> = got.iter().map(|(n, t, _)| format!("{n}: {t}")).collect();
    if got_names != names(&want) {
        return bad(format!(
            "the shader has {{{}}} but the Rust struct gives {{{}}}",
            got_names.join(", "),
            names(&want).join(", ")
        ));
    }
    if let Some((n, _, off)) = got
        .iter()
        .enumerate()
        .find_map(|(i, (n, _, off))| (*off as usize != 4 * i).then_some((n.clone(), i, *off)))
    {
        return bad(format!(
            "member {n} sits at byte {off}, not packed after the ones before"
        ));
    }
    Ok(())
}

kernel_params! {
    /// shaders/elementwise.wgsl: `n` elements and one scalar operand as raw bits (the scale
    /// factor's f32 bits, the fill pattern). Here because the engine itself fills buffers with it.
    pub struct ElementwiseParams {
        n: u32,
        a: u32,
    }
}

/// Declarations every shader shares, prepended to each.
pub const PRELUDE: &str = include_str!("../shaders/common.wgsl");

/// Every shader in `shaders/`, by name.
pub const SHADERS: &[(&str, &str)] = &[
    ("elementwise", include_str!("../shaders/elementwise.wgsl")),
    ("reduce", include_str!("../shaders/reduce.wgsl")),
    ("bias", include_str!("../shaders/bias.wgsl")),
    ("l2_normalize", include_str!("../shaders/l2_normalize.wgsl")),
    ("byol_loss", include_str!("../shaders/byol_loss.wgsl")),
    (
        "cross_entropy",
        include_str!("../shaders/cross_entropy.wgsl"),
    ),
    ("info_nce", include_str!("../shaders/info_nce.wgsl")),
    ("nt_xent", include_str!("../shaders/nt_xent.wgsl")),
    ("concat", include_str!("../shaders/concat.wgsl")),
    ("moments", include_str!("../shaders/moments.wgsl")),
    ("batch_norm", include_str!("../shaders/batch_norm.wgsl")),
    ("group_norm", include_str!("../shaders/group_norm.wgsl")),
    ("conv2d", include_str!("../shaders/conv2d.wgsl")),
    ("conv2d_tiled", include_str!("../shaders/conv2d_tiled.wgsl")),
    (
        "conv2d_unfold",
        include_str!("../shaders/conv2d_unfold.wgsl"),
    ),
    ("pooling", include_str!("../shaders/pooling.wgsl")),
    (
        "matmul_blocked",
        include_str!("../shaders/matmul_blocked.wgsl"),
    ),
    ("matmul_tiled", include_str!("../shaders/matmul_tiled.wgsl")),
    ("matmul_vec4", include_str!("../shaders/matmul_vec4.wgsl")),
    ("matmul_pack", include_str!("../shaders/matmul_pack.wgsl")),
    (
        "matmul_texture",
        include_str!("../shaders/matmul_texture.wgsl"),
    ),
    ("optim", include_str!("../shaders/optim.wgsl")),
    ("augment", include_str!("../shaders/augment.wgsl")),
    ("eigen", include_str!("../shaders/eigen.wgsl")),
    ("knn", include_str!("../shaders/knn.wgsl")),
];

/// A checksum of every shader's source (and the prelude): a tune cache entry measured with other
/// kernels is not reused.
pub fn shaders_checksum() -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(include_str!("../shaders/common.wgsl").as_bytes());
    for (name, source) in SHADERS {
        h.update(name.as_bytes());
        h.update(source.as_bytes());
    }
    h.finalize()
}

/// The full source of a shader: the shared prelude, then its own file.
pub fn shader_source(name: &str) -> Result<String> {
    SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| with_prelude(s))
        .ok_or_else(|| Error::Shader(format!("unknown shader {name:?}")))
}

/// `source` with the shared declarations of `shaders/common.wgsl` in front.
pub fn with_prelude(source: &str) -> String {
    format!("{PRELUDE}\n{source}")
}

/// Parses and validates WGSL with naga; needs no GPU.
pub fn validate_wgsl(name: &str, source: &str) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| Error::Shader(format!("{name}.wgsl: {}", e.emit_to_string(source))))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader(format!("{name}.wgsl: {}", e.emit_to_string(source))))?;
    Ok((module, info))
}

/// How one binding of an entry point is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    Params,
    /// A read-only array in a uniform buffer at a binding other than 0 (64 KiB at most): on
    /// llvmpipe a uniform load is a plain gather where a storage load is a per-lane branch.
    UniformRead,
    StorageRead,
    StorageReadWrite,
    /// A `texture_2d<f32>` read with `textureLoad` (rgba32float, unfilterable).
    TextureRead,
    /// A `texture_storage_2d<rgba32float, write>`.
    TextureWrite,
}

impl BindingKind {
    pub fn is_texture(self) -> bool {
        matches!(self, BindingKind::TextureRead | BindingKind::TextureWrite)
    }
}

/// The bindings of one entry point, ascending by binding number (group 0 only).
pub fn entry_bindings(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> Result<Vec<(u32, BindingKind)>> {
    let (index, _) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == entry)
        .ok_or_else(|| Error::Shader(format!("no entry point {entry:?}")))?;
    let fn_info = info.get_entry_point(index);
    let mut out = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        if fn_info[handle].is_empty() {
            continue;
        }
        if rb.group != 0 {
            return Err(Error::Shader(format!(
                "{entry}: only bind group 0 is supported"
            )));
        }
        let kind = match var.space {
            naga::AddressSpace::Uniform if rb.binding == 0 => BindingKind::Params,
            naga::AddressSpace::Uniform => BindingKind::UniformRead,
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    BindingKind::StorageReadWrite
                } else {
                    BindingKind::StorageRead
                }
            }
            naga::AddressSpace::Handle => match module.types[var.ty].inner {
                naga::TypeInner::Image {
                    class: naga::ImageClass::Sampled { .. },
                    ..
                } => BindingKind::TextureRead,
                naga::TypeInner::Image {
                    class:
                        naga::ImageClass::Storage {
                            format: naga::StorageFormat::Rgba32Float,
                            ..
                        },
                    ..
                } => BindingKind::TextureWrite,
                ref other => {
                    return Err(Error::Shader(format!(
                    "{entry}: unsupported handle binding {other:?} (textures are 2-D rgba32float)"
                )))
                }
            },
            other => {
                return Err(Error::Shader(format!(
                    "{entry}: unsupported binding space {other:?}"
                )))
            }
        };
        out.push((rb.binding, kind));
    }
    out.sort_by_key(|(b, _)| *b);
    if let Some(pos) = out.iter().position(|(_, k)| *k == BindingKind::Params) {
        if out[pos].0 != 0 {
            return Err(Error::Shader(format!(
                "{entry}: the params uniform must be @binding(0)"
            )));
        }
    }
    Ok(out)
}

/// A compiled kernel: pipeline, its layout and the bindings it expects.
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<(u32, BindingKind)>,
    pub has_params: bool,
}

/// (shader, entry point, overridable constants as bit patterns): what makes a pipeline distinct.
type KernelKey = (String, String, Vec<(String, u64)>);

/// Pipelines compiled once per (shader, entry point, overridable constants).
#[derive(Default)]
pub struct KernelCache {
    modules: HashMap<&'static str, (wgpu::ShaderModule, naga::Module, naga::valid::ModuleInfo)>,
    kernels: HashMap<KernelKey, std::rc::Rc<Kernel>>,
}

impl KernelCache {
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        abi: (&[(&str, &str)], bool),
    ) -> Result<std::rc::Rc<Kernel>> {
        let key: KernelKey = (
            shader.to_string(),
            entry.to_string(),
            constants
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_bits()))
                .collect::<Vec<_>>(),
        );
        if let Some(k) = self.kernels.get(&key) {
            return Ok(k.clone());
        }
        if !self.modules.contains_key(shader) {
            let source = shader_source(shader)?;
            let (module, info) = validate_wgsl(shader, &source)?;
            // naga's runtime bounds checks stay on: measured on llvmpipe they cost nothing visible,
            // and they turn a kernel indexing bug into a wrong value instead of a crash.
            let sm = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader),
                source: wgpu::ShaderSource::Wgsl(source.clone().into()),
            });
            self.modules.insert(shader, (sm, module, info));
        }
        let (sm, module, info) = &self.modules[shader];
        let bindings = entry_bindings(module, info, entry)
            .map_err(|e| Error::Shader(format!("{shader}.wgsl: {e}")))?;
        if bindings.iter().any(|(_, k)| *k == BindingKind::Params) {
            check_params_abi(shader, module, abi.0, abi.1)?;
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding: *binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match kind {
                    BindingKind::Params => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    BindingKind::UniformRead => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    BindingKind::StorageRead => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    BindingKind::StorageReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    BindingKind::TextureRead => wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    BindingKind::TextureWrite => wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba32Float,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{shader}::{entry}")),
            layout: Some(&pipeline_layout),
            module: sm,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let has_params = bindings.iter().any(|(_, k)| *k == BindingKind::Params);
        let kernel = std::rc::Rc::new(Kernel {
            pipeline,
            layout,
            bindings,
            has_params,
        });
        self.kernels.insert(key, kernel.clone());
        Ok(kernel)
    }

    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }
}
