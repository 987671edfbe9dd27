//! BYOL's image augmentations, computed on the GPU (shaders/augment.wgsl).
//!
//! The random parameters of each view are drawn per image on the CPU from a seeded [`Rng`]
//! ([`AugmentConfig::sample`]) and packed into a small buffer; a batch of u8 images is uploaded
//! once (four bytes per u32) and each view is computed from that one buffer in a few passes:
//!
//! 1. `color_pre`: bytes to [0, 1] through a 256-entry table made on the CPU (so the identity
//!    transform is exact on GPUs whose division is approximate), random resized crop
//!    (bilinear), flip, and the color jitter ops that come before contrast in the drawn order
//!    (plus grayscale when contrast is not applied);
//! 2. `gray_mean` + `color_finish` (only when some image applies contrast): the per-image mean
//!    of the grayscale image that contrast blends with, then contrast, the remaining jitter ops
//!    and grayscale;
//! 3. `blur_h` + `blur_v_finish`: separable gaussian blur with reflect padding, then solarize and
//!    per-channel normalization into [N, 3, S, S].
//!
//! The order is BYOL's: crop → flip → color jitter (random order) → grayscale → blur → solarize
//! → normalize. Color math follows torchvision (`adjust_*` on float images in [0, 1]); unlike
//! torchvision the resize is plain bilinear without antialiasing (as TensorFlow's, which BYOL used).

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// ImageNet per-channel mean and std, BYOL's normalization.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Words per image in the packed parameter buffer (must match `VIEW_WORDS` in the shader).
pub const VIEW_WORDS: usize = 16;

/// Random resized crop: area fraction and aspect ratio (width / height) ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct CropConfig {
    pub scale: (f32, f32),
    pub ratio: (f32, f32),
}

/// Color jitter, applied with probability `p`; a strength of 0 leaves that property alone.
#[derive(Clone, Debug, PartialEq)]
pub struct JitterConfig {
    pub p: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    /// At most 0.5 (a full turn of the hue circle either way).
    pub hue: f32,
}

/// Gaussian blur with sigma uniform in `sigma`, applied with probability `p`. The kernel spans
/// `kernel_fraction` of the output size (torchvision / BYOL: 10 %, made odd).
#[derive(Clone, Debug, PartialEq)]
pub struct BlurConfig {
    pub p: f32,
    pub sigma: (f32, f32),
    pub kernel_fraction: f32,
}

/// Solarization (values at or above `threshold` become 1 - value), applied with probability `p`.
#[derive(Clone, Debug, PartialEq)]
pub struct SolarizeConfig {
    pub p: f32,
    pub threshold: f32,
}

/// The augmentation of one view. Every transform switches off with a probability of 0 (the crop
/// with `crop: None`, which resizes the whole image).
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    pub crop: Option<CropConfig>,
    pub flip_p: f32,
    pub jitter: JitterConfig,
    pub grayscale_p: f32,
    pub blur: BlurConfig,
    pub solarize: SolarizeConfig,
    /// Per-channel normalization of the [0, 1] values: (x - mean) / std.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl AugmentConfig {
    /// BYOL's published augmentations for [view 1, view 2] (they differ in blur and solarize).
    pub fn byol() -> [AugmentConfig; 2] {
        let view = |blur_p: f32, solarize_p: f32| AugmentConfig {
            crop: Some(CropConfig {
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            }),
            flip_p: 0.5,
            jitter: JitterConfig {
                p: 0.8,
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.2,
                hue: 0.1,
            },
            grayscale_p: 0.2,
            blur: BlurConfig {
                p: blur_p,
                sigma: (0.1, 2.0),
                kernel_fraction: 0.1,
            },
            solarize: SolarizeConfig {
                p: solarize_p,
                threshold: 0.5,
            },
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        };
        [view(1.0, 0.0), view(0.1, 0.2)]
    }

    /// The seed study's augmentations, the same for both views.
    pub fn seed_preset() -> [AugmentConfig; 2] {
        let view = AugmentConfig {
            crop: Some(CropConfig {
                scale: (0.2, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            }),
            flip_p: 0.5,
            jitter: JitterConfig {
                p: 0.8,
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
                hue: 0.1,
            },
            grayscale_p: 0.2,
            blur: BlurConfig {
                p: 0.5,
                sigma: (0.1, 2.0),
                kernel_fraction: 0.1,
            },
            solarize: SolarizeConfig {
                p: 0.0,
                threshold: 0.5,
            },
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        };
        [view.clone(), view]
    }

    /// The evaluation transform: resize the whole image, normalize, nothing random.
    pub fn none() -> AugmentConfig {
        AugmentConfig {
            crop: None,
            flip_p: 0.0,
            jitter: JitterConfig {
                p: 0.0,
                brightness: 0.0,
                contrast: 0.0,
                saturation: 0.0,
                hue: 0.0,
            },
            grayscale_p: 0.0,
            blur: BlurConfig {
                p: 0.0,
                sigma: (0.1, 2.0),
                kernel_fraction: 0.1,
            },
            solarize: SolarizeConfig {
                p: 0.0,
                threshold: 0.5,
            },
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Checks every probability, range and strength; the message names the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(format!("augmentation config: {what}")));
        let probs = [
            ("flip_p", self.flip_p),
            ("jitter.p", self.jitter.p),
            ("grayscale_p", self.grayscale_p),
            ("blur.p", self.blur.p),
            ("solarize.p", self.solarize.p),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("probability {name} = {p} is outside [0, 1]"));
            }
        }
        if let Some(c) = &self.crop {
            let (lo, hi) = c.scale;
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                return bad(format!(
                    "crop scale ({lo}, {hi}) must satisfy 0 < min <= max <= 1"
                ));
            }
            let (lo, hi) = c.ratio;
            if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
                return bad(format!(
                    "crop ratio ({lo}, {hi}) must satisfy 0 < min <= max"
                ));
            }
        }
        let j = &self.jitter;
        for (name, s) in [
            ("brightness", j.brightness),
            ("contrast", j.contrast),
            ("saturation", j.saturation),
        ] {
            if !(s >= 0.0 && s.is_finite()) {
                return bad(format!("jitter {name} = {s} must be >= 0"));
            }
        }
        if !(0.0..=0.5).contains(&j.hue) {
            return bad(format!("jitter hue = {} must be in [0, 0.5]", j.hue));
        }
        let (lo, hi) = self.blur.sigma;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return bad(format!(
                "blur sigma ({lo}, {hi}) must satisfy 0 < min <= max"
            ));
        }
        if !(self.blur.kernel_fraction > 0.0 && self.blur.kernel_fraction <= 1.0) {
            return bad(format!(
                "blur kernel_fraction = {} must be in (0, 1]",
                self.blur.kernel_fraction
            ));
        }
        if !self.solarize.threshold.is_finite() {
            return bad("solarize threshold must be finite".into());
        }
        for c in 0..3 {
            if !(self.mean[c].is_finite() && self.std[c] > 0.0 && self.std[c].is_finite()) {
                return bad(format!(
                    "channel {c}: mean {} / std {} (std must be > 0)",
                    self.mean[c], self.std[c]
                ));
            }
        }
        Ok(())
    }

    /// Draws one image's parameters for a `src_h` x `src_w` source. The draws happen in a fixed
    /// order (crop, flip, jitter, grayscale, blur, solarize) so a seed fixes every view.
    pub fn sample(&self, rng: &mut Rng, src_h: usize, src_w: usize) -> ViewParams {
        let crop = match &self.crop {
            Some(c) => random_resized_crop(rng, src_h, src_w, c),
            None => CropBox::full(src_h, src_w),
        };
        let flip = rng.next_f64() < self.flip_p as f64;
        let jitter = if rng.next_f64() < self.jitter.p as f64 {
            Some(sample_jitter(rng, &self.jitter))
        } else {
            None
        };
        let grayscale = rng.next_f64() < self.grayscale_p as f64;
        let blur_sigma = if rng.next_f64() < self.blur.p as f64 {
            rng.uniform(self.blur.sigma.0 as f64, self.blur.sigma.1 as f64) as f32
        } else {
            0.0
        };
        let solarize = rng.next_f64() < self.solarize.p as f64;
        ViewParams {
            crop,
            flip,
            jitter,
            grayscale,
            blur_sigma,
            solarize,
        }
    }
}

/// A crop box in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl CropBox {
    pub fn full(h: usize, w: usize) -> CropBox {
        CropBox { x: 0, y: 0, w, h }
    }
}

/// One color jitter op; the jitter applies its four ops in a drawn order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitterOp {
    Brightness = 0,
    Contrast = 1,
    Saturation = 2,
    Hue = 3,
}

/// Drawn jitter factors: brightness, contrast and saturation are blend factors (1 = unchanged),
/// hue a shift in turns (0 = unchanged).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub order: [JitterOp; 4],
}

/// The drawn parameters of one view of one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewParams {
    pub crop: CropBox,
    pub flip: bool,
    /// `None` when the jitter was not applied.
    pub jitter: Option<Jitter>,
    pub grayscale: bool,
    /// 0 = no blur.
    pub blur_sigma: f32,
    pub solarize: bool,
}

impl ViewParams {
    /// The whole image, nothing else: a plain resize.
    pub fn identity(src_h: usize, src_w: usize) -> ViewParams {
        ViewParams {
            crop: CropBox::full(src_h, src_w),
            flip: false,
            jitter: None,
            grayscale: false,
            blur_sigma: 0.0,
            solarize: false,
        }
    }

    /// Where contrast sits in the jitter order, or 4 when no contrast is applied: ops before it
    /// run in the first pass, contrast and the rest after the per-image mean is known.
    fn contrast_split(&self) -> u32 {
        match &self.jitter {
            Some(j) if j.contrast != 1.0 => j
                .order
                .iter()
                .position(|&op| op == JitterOp::Contrast)
                .map_or(4, |p| p as u32),
            _ => 4,
        }
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and log-uniform
/// aspect ratio, then a center crop clamped to the ratio range.
fn random_resized_crop(rng: &mut Rng, h: usize, w: usize, c: &CropConfig) -> CropBox {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = ((c.ratio.0 as f64).ln(), (c.ratio.1 as f64).ln());
    for _ in 0..10 {
        let target = area * rng.uniform(c.scale.0 as f64, c.scale.1 as f64);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let y = rng.below(h - ch + 1);
            let x = rng.below(w - cw + 1);
            return CropBox { x, y, w: cw, h: ch };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < c.ratio.0 as f64 {
        (
            w,
            ((w as f64 / c.ratio.0 as f64).round() as usize).clamp(1, h),
        )
    } else if in_ratio > c.ratio.1 as f64 {
        (
            ((h as f64 * c.ratio.1 as f64).round() as usize).clamp(1, w),
            h,
        )
    } else {
        (w, h)
    };
    CropBox {
        x: (w - cw) / 2,
        y: (h - ch) / 2,
        w: cw,
        h: ch,
    }
}

fn sample_jitter(rng: &mut Rng, c: &JitterConfig) -> Jitter {
    let mut factor = |s: f32| {
        if s > 0.0 {
            rng.uniform((1.0 - s as f64).max(0.0), 1.0 + s as f64) as f32
        } else {
            1.0
        }
    };
    let brightness = factor(c.brightness);
    let contrast = factor(c.contrast);
    let saturation = factor(c.saturation);
    let hue = if c.hue > 0.0 {
        rng.uniform(-c.hue as f64, c.hue as f64) as f32
    } else {
        0.0
    };
    let mut order = [
        JitterOp::Brightness,
        JitterOp::Contrast,
        JitterOp::Saturation,
        JitterOp::Hue,
    ];
    for i in (1..4).rev() {
        order.swap(i, rng.below(i + 1));
    }
    Jitter {
        brightness,
        contrast,
        saturation,
        hue,
        order,
    }
}

/// The blur radius for an output of `size` pixels: torchvision's kernel of `fraction * size`
/// pixels made odd (2 * radius + 1), at least 3 wide so that small test images still blur.
pub fn blur_radius(size: usize, fraction: f32) -> usize {
    (((size as f64 * fraction as f64).floor() as usize) / 2).max(1)
}

/// Packs the parameters of a batch into `VIEW_WORDS` words per image (layout in the shader).
pub fn pack_params(params: &[ViewParams], src_h: usize, src_w: usize) -> Result<Vec<u32>> {
    let mut words = Vec::with_capacity(params.len() * VIEW_WORDS);
    for (i, v) in params.iter().enumerate() {
        let c = v.crop;
        if c.w == 0 || c.h == 0 || c.x + c.w > src_w || c.y + c.h > src_h {
            return Err(Error::Invalid(format!(
                "image {i}: crop {c:?} is empty or leaves the {src_h}x{src_w} source"
            )));
        }
        if !(v.blur_sigma >= 0.0 && v.blur_sigma.is_finite()) {
            return Err(Error::Invalid(format!(
                "image {i}: blur sigma {} must be >= 0",
                v.blur_sigma
            )));
        }
        let j = v.jitter.unwrap_or(Jitter {
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            hue: 0.0,
            order: [
                JitterOp::Brightness,
                JitterOp::Contrast,
                JitterOp::Saturation,
                JitterOp::Hue,
            ],
        });
        let mut seen = [false; 4];
        for op in j.order {
            seen[op as usize] = true;
        }
        if seen.contains(&false) {
            return Err(Error::Invalid(format!(
                "image {i}: jitter order {:?} is not a permutation of the four ops",
                j.order
            )));
        }
        let order = j
            .order
            .iter()
            .enumerate()
            .fold(0u32, |acc, (pos, &op)| acc | (op as u32) << (2 * pos));
        words.extend_from_slice(&[
            c.x as u32,
            c.y as u32,
            c.w as u32,
            c.h as u32,
            v.flip as u32,
            j.brightness.to_bits(),
            j.contrast.to_bits(),
            j.saturation.to_bits(),
            j.hue.to_bits(),
            order,
            v.contrast_split(),
            v.grayscale as u32,
            v.blur_sigma.to_bits(),
            v.solarize as u32,
            0,
            0,
        ]);
    }
    Ok(words)
}

/// Uploads HWC u8 images, four bytes per u32 word (little-endian, the last word zero-padded).
pub fn upload_images(engine: &Engine, pixels: &[u8]) -> Result<Tensor> {
    if pixels.is_empty() {
        return Err(Error::Shape("upload_images: no pixels".into()));
    }
    let words: Vec<u32> = pixels
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect();
    if words.len() as u64 > engine.max_binding_words() {
        return Err(Error::Shape(format!(
            "a batch of {} image bytes exceeds the adapter's largest binding; use smaller batches",
            pixels.len()
        )));
    }
    Tensor::from_u32(engine, &words, &[words.len()])
}

crate::kernels::kernel_params! {
    /// shaders/augment.wgsl: `n` images of src_h x src_w made into size x size views, the blur
    /// radius, the solarize threshold and the per-channel normalization.
    pub struct AugmentParams {
        n: u32,
        src_h: u32,
        src_w: u32,
        size: u32,
        radius: u32,
        threshold: f32,
        mean_r: f32,
        mean_g: f32,
        mean_b: f32,
        std_r: f32,
        std_g: f32,
        std_b: f32,
    }
}

/// The augmentation shader's parameter struct (see `ops::KERNEL_ABI`).
pub const KERNEL_ABI: &[crate::kernels::KernelAbi] = &[crate::kernels::KernelAbi::of::<
    AugmentParams,
>("augment", true)];

/// One augmented view of every image of an uploaded batch (`images`: u32-packed [N, H, W, 3]
/// bytes from [`upload_images`], N = `params.len()`), as normalized f32 [N, 3, S, S].
pub fn augment_batch(
    engine: &Engine,
    images: &Tensor,
    src_h: usize,
    src_w: usize,
    params: &[ViewParams],
    cfg: &AugmentConfig,
    out_size: usize,
) -> Result<Tensor> {
    cfg.validate()?;
    let n = params.len();
    if out_size == 0 || n == 0 || src_h == 0 || src_w == 0 {
        return Err(Error::Shape(format!(
            "augment_batch: {n} images of {src_h}x{src_w} to {out_size}x{out_size}: nothing may be 0"
        )));
    }
    if images.dtype() != DType::U32 || images.numel() * 4 < n * src_h * src_w * 3 {
        return Err(Error::Shape(format!(
            "augment_batch: {images:?} does not hold {n} packed {src_h}x{src_w} RGB images"
        )));
    }
    let out_shape = [n, 3, out_size, out_size];
    if (n * 3 * out_size * out_size) as u64 > engine.max_binding_words() {
        return Err(Error::Shape(format!(
            "augment_batch: output {out_shape:?} exceeds the adapter's largest binding; use smaller batches"
        )));
    }
    let packed = pack_params(params, src_h, src_w)?;
    let views = Tensor::from_u32(engine, &packed, &[packed.len()])?;
    let radius = blur_radius(out_size, cfg.blur.kernel_fraction);
    let uniform = AugmentParams {
        n: n as u32,
        src_h: src_h as u32,
        src_w: src_w as u32,
        size: out_size as u32,
        radius: radius as u32,
        threshold: cfg.solarize.threshold,
        mean_r: cfg.mean[0],
        mean_g: cfg.mean[1],
        mean_b: cfg.mean[2],
        std_r: cfg.std[0],
        std_g: cfg.std[1],
        std_b: cfg.std[2],
    };
    let pixels = (n * out_size * out_size) as u64;
    let run = |entry: &str, bufs: &[crate::engine::BufSlice]| {
        engine.dispatch_1d("augment", entry, &[], &uniform, bufs, pixels)
    };

    let unit: Vec<f32> = (0..256).map(|b| b as f32 / 255.0).collect();
    let unit = Tensor::from_slice(engine, &unit, &[256])?;
    let color = Tensor::empty(engine, &out_shape, DType::F32)?;
    run(
        "color_pre",
        &[images.slice(), views.slice(), color.slice(), unit.slice()],
    )?;
    if params.iter().any(|v| v.contrast_split() < 4) {
        let means = Tensor::empty(engine, &[n], DType::F32)?;
        engine.dispatch(
            "augment",
            "gray_mean",
            &[],
            &uniform,
            &[color.slice(), means.slice()],
            [n as u32, 1, 1],
        )?;
        run(
            "color_finish",
            &[views.slice(), means.slice(), color.slice()],
        )?;
    }
    let out = Tensor::empty(engine, &out_shape, DType::F32)?;
    if params.iter().any(|v| v.blur_sigma > 0.0) {
        let rows = Tensor::empty(engine, &out_shape, DType::F32)?;
        run("blur_h", &[views.slice(), color.slice(), rows.slice()])?;
        run("blur_v_finish", &[views.slice(), rows.slice(), out.slice()])?;
    } else {
        run(
            "blur_v_finish",
            &[views.slice(), color.slice(), out.slice()],
        )?;
    }
    Ok(out)
}
