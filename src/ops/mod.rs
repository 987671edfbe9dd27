//! Differentiable ops. Each file holds one op family: its forward, its backward and the shapes it
//! accepts, next to its shader in `shaders/`.

pub mod batch_norm;
pub mod bias;
pub mod byol_loss;
pub mod concat;
pub mod conv2d;
mod conv2d_geometry;
mod conv2d_unfold;
pub mod cross_entropy;
pub mod eigen;
pub mod elementwise;
mod gemm_shape;
pub mod group_norm;
pub mod info_nce;
pub mod knn;
pub mod l2_normalize;
pub mod layer_norm;
pub mod matmul;
mod matmul_texture;
mod moments;
pub mod nt_xent;
pub mod pooling;
pub mod reduce;
mod uniform_window;
pub mod weight_std;

pub use batch_norm::{batch_norm, batch_norm_relu, ghost_batch_norm, BatchNormState};
pub use bias::bias_add;
pub use byol_loss::byol_loss;
pub use concat::{concat0, narrow0, split0};
pub use conv2d::conv2d;
pub use cross_entropy::{check_targets, cross_entropy, upload_targets};
pub use eigen::{effective_rank, symmetric_eigenvalues};
pub use elementwise::{add, add_relu, mul, relu, scale, sub};
pub use group_norm::group_norm;
pub use info_nce::{info_nce, queue_push};
pub use knn::{knn_class_votes, knn_votes};
pub use l2_normalize::l2_normalize;
pub use layer_norm::layer_norm;
pub use matmul::{matmul, matmul_nt, matmul_tn};
pub use moments::NORM_EPS;
pub use nt_xent::nt_xent;
pub use pooling::{global_avg_pool, max_pool2d};
pub use reduce::{mean, mean_axis, sum, sum_axis};
pub use weight_std::weight_std;

use crate::engine::{BufSlice, Engine};
use crate::kernels::KernelAbi;

/// The parameter struct of each op shader, for the test that holds them against the WGSL
/// (`tests/kernel_abi.rs`); `true` where the kernels are launched 1-D (`pitch` appended).
pub const KERNEL_ABI: &[KernelAbi] = &[
    KernelAbi::of::<crate::kernels::ElementwiseParams>("elementwise", true),
    KernelAbi::of::<reduce::ReduceParams>("reduce", true),
    KernelAbi::of::<bias::BiasParams>("bias", true),
    KernelAbi::of::<l2_normalize::L2NormalizeParams>("l2_normalize", true),
    KernelAbi::of::<byol_loss::ByolLossParams>("byol_loss", true),
    KernelAbi::of::<cross_entropy::CrossEntropyParams>("cross_entropy", true),
    KernelAbi::of::<info_nce::InfoNceParams>("info_nce", true),
    KernelAbi::of::<nt_xent::MaskParams>("nt_xent", true),
    KernelAbi::of::<concat::CopyParams>("concat", true),
    KernelAbi::of::<moments::MomentsParams>("moments", true),
    KernelAbi::of::<batch_norm::BatchNormParams>("batch_norm", true),
    KernelAbi::of::<group_norm::GroupNormParams>("group_norm", true),
    KernelAbi::of::<conv2d::ConvParams>("conv2d", false),
    KernelAbi::of::<conv2d::ConvParams>("conv2d_tiled", false),
    KernelAbi::of::<conv2d::ConvParams>("conv2d_unfold", false),
    KernelAbi::of::<pooling::PoolParams>("pooling", true),
    KernelAbi::of::<matmul::GemmParams>("matmul_blocked", false),
    KernelAbi::of::<matmul::GemmParams>("matmul_tiled", false),
    KernelAbi::of::<matmul::GemmParams>("matmul_vec4", false),
    KernelAbi::of::<matmul_texture::PackParams>("matmul_pack", true),
    KernelAbi::of::<matmul_texture::TextureGemmParams>("matmul_texture", false),
    KernelAbi::of::<eigen::EigenParams>("eigen", false),
    KernelAbi::of::<knn::KnnParams>("knn", false),
];
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// Loop iterations after which software Vulkan (llvmpipe) silently ends every loop of a shader
/// invocation, once all its loops together have run that many iterations (gallivm's
/// `LP_MAX_TGSI_LOOP_ITERATIONS`). An invocation that needs more returns a wrong answer without any
/// error. Loops with a small constant trip count count too unless the compiler unrolls them: it
/// unrolls simple ones, but not, for instance, the 8-wide block loops of shaders/conv2d.wgsl
/// (measured on Mesa 22.3: see ops/conv2d.rs).
pub const SOFTWARE_LOOP_LIMIT: u64 = 65_535;

/// Loop iterations ops let one invocation run, on every adapter: chunk lengths of long reductions
/// are bounded by it (with room below [`SOFTWARE_LOOP_LIMIT`] for loop entries and short loops).
pub const LOOP_BUDGET: usize = 50_000;

/// Refuses, on a software adapter, a launch whose invocations loop more than [`LOOP_BUDGET`] times
/// (where an op cannot split its loop); `hint` says what to do instead. Other adapters pass.
pub(crate) fn check_loop_budget(
    engine: &Engine,
    op: &str,
    iterations: u64,
    hint: &str,
) -> Result<()> {
    if engine.gpu().is_software() && iterations > LOOP_BUDGET as u64 {
        return Err(Error::Invalid(format!(
            "{op}: this shape needs {iterations} loop iterations in one GPU invocation, but software \
             Vulkan (llvmpipe) silently stops loops after {SOFTWARE_LOOP_LIMIT}; {hint}"
        )));
    }
    Ok(())
}

/// Same data, new shape (same number of elements); the gradient is reshaped back.
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out = x.view(shape)?;
    let in_shape = x.shape().to_vec();
    tape::record(&out, &[x], move |dy| Ok(vec![Some(dy.view(&in_shape)?)]));
    Ok(out)
}

pub(crate) fn check_f32(op: &str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        if t.dtype() != DType::F32 {
            return Err(Error::Invalid(format!("{op}: {t:?} must be f32")));
        }
    }
    Ok(())
}

pub(crate) fn check_same_shape(op: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Shape(format!(
            "{op}: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        )));
    }
    Ok(())
}

/// A binding that covers elements `start..start + len` of `t`, beginning at the nearest legal
/// (aligned) offset at or below `start`; returns it with the element offset of `start` inside it.
/// Ops use it to split tensors larger than one binding into pieces.
pub(crate) fn window<'a>(
    engine: &Engine,
    t: &'a Tensor,
    start: usize,
    len: usize,
) -> (BufSlice<'a>, u32) {
    let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let aligned = start / align * align;
    let base = start - aligned;
    (t.slice_elems(aligned, base + len), base as u32)
}

/// Splits `0..n` into ranges of at most `max` (callers pass an aligned `max`).
pub(crate) fn chunks(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let max = max.max(1);
    (0..n.div_ceil(max)).map(move |i| (i * max, max.min(n - i * max)))
}
