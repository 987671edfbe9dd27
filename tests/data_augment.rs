//! GPU augmentations against an f64 CPU reference with fixed parameters, parameter sampling,
//! config errors, and the `data show` grid.

mod common;
use byol::data::augment::{
    augment_batch, blur_radius, upload_images, AugmentConfig, CropBox, Jitter, JitterOp, ViewParams,
};
use byol::data::loader::HostBatch;
use byol::data::views::two_views;
use byol::data::ImageSet;
use byol::rng::Rng;
use common::assert_close_tol;

/// Source sizes (h, w) and output sizes: awkward on purpose.
const SOURCES: &[(usize, usize)] = &[(7, 5), (33, 17)];
const OUTPUTS: &[usize] = &[1, 8, 13];
/// Images per batch in the transform checks.
const N: usize = 3;

const ALL_OPS: [JitterOp; 4] = [
    JitterOp::Brightness,
    JitterOp::Contrast,
    JitterOp::Saturation,
    JitterOp::Hue,
];

/// Random bytes in [16, 255]: values near 0 would make a 1e-4 *relative* check measure f32
/// rounding of the bilinear weights rather than the kernel.
fn random_pixels(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| 16 + rng.below(240) as u8).collect()
}

/// A config that only normalizes with mean 0, std 1, so outputs are the [0, 1] values.
fn plain() -> AugmentConfig {
    AugmentConfig {
        mean: [0.0; 3],
        std: [1.0; 3],
        ..AugmentConfig::none()
    }
}

fn random_crop(rng: &mut Rng, h: usize, w: usize) -> CropBox {
    let ch = 1 + rng.below(h);
    let cw = 1 + rng.below(w);
    CropBox {
        x: rng.below(w - cw + 1),
        y: rng.below(h - ch + 1),
        w: cw,
        h: ch,
    }
}

fn identity_jitter() -> Jitter {
    Jitter {
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
        hue: 0.0,
        order: ALL_OPS,
    }
}

fn gray(c: [f64; 3]) -> f64 {
    0.2989 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn blend(a: [f64; 3], b: [f64; 3], r: f64) -> [f64; 3] {
    [0, 1, 2].map(|i| (r * a[i] + (1.0 - r) * b[i]).clamp(0.0, 1.0))
}

/// torchvision's adjust_hue (rgb -> hsv, shift, hsv -> rgb) in f64.
fn adjust_hue(c: [f64; 3], shift: f64) -> [f64; 3] {
    let [r, g, b] = c;
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let eq = maxc == minc;
    let s = cr / if eq { 1.0 } else { maxc };
    let d = if eq { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / d, (maxc - g) / d, (maxc - b) / d);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = (h / 6.0 + 1.0).rem_euclid(1.0);
    let h = (h + shift).rem_euclid(1.0);
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let v = maxc;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i as i64 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

fn reflect(i: i64, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as i64 - 1);
    let j = i.abs() % period;
    (if j >= len as i64 { period - j } else { j }) as usize
}

/// The whole pipeline for one image, in f64: [3, S, S].
fn reference_view(src: &[u8], w: usize, v: &ViewParams, cfg: &AugmentConfig, s: usize) -> Vec<f64> {
    let px = |x: usize, y: usize, c: usize| src[(y * w + x) * 3 + c] as f64 / 255.0;
    let CropBox {
        x: x0,
        y: y0,
        w: cw,
        h: ch,
    } = v.crop;
    // Crop + bilinear resize (align_corners = false, edges clamped to the box) + flip.
    let mut img: Vec<[f64; 3]> = Vec::with_capacity(s * s);
    for oy in 0..s {
        for ox in 0..s {
            let sx = if v.flip { s - 1 - ox } else { ox };
            let fxs = ((sx as f64 + 0.5) * cw as f64 / s as f64 - 0.5).max(0.0);
            let fys = ((oy as f64 + 0.5) * ch as f64 / s as f64 - 0.5).max(0.0);
            let (xl, yl) = ((fxs as usize).min(cw - 1), (fys as usize).min(ch - 1));
            let (xh, yh) = ((xl + 1).min(cw - 1), (yl + 1).min(ch - 1));
            let (fx, fy) = (fxs - xl as f64, fys - yl as f64);
            img.push([0, 1, 2].map(|c| {
                let top = px(x0 + xl, y0 + yl, c) * (1.0 - fx) + px(x0 + xh, y0 + yl, c) * fx;
                let bot = px(x0 + xl, y0 + yh, c) * (1.0 - fx) + px(x0 + xh, y0 + yh, c) * fx;
                top * (1.0 - fy) + bot * fy
            }));
        }
    }
    // Color jitter, op by op over the whole image (contrast sees the current image's mean).
    if let Some(j) = &v.jitter {
        for op in j.order {
            match op {
                JitterOp::Brightness if j.brightness != 1.0 => {
                    let f = j.brightness as f64;
                    img.iter_mut()
                        .for_each(|c| *c = c.map(|x| (x * f).clamp(0.0, 1.0)));
                }
                JitterOp::Contrast if j.contrast != 1.0 => {
                    let mean = img.iter().map(|&c| gray(c)).sum::<f64>() / img.len() as f64;
                    img.iter_mut()
                        .for_each(|c| *c = blend(*c, [mean; 3], j.contrast as f64));
                }
                JitterOp::Saturation if j.saturation != 1.0 => {
                    img.iter_mut()
                        .for_each(|c| *c = blend(*c, [gray(*c); 3], j.saturation as f64));
                }
                JitterOp::Hue if j.hue != 0.0 => {
                    img.iter_mut()
                        .for_each(|c| *c = adjust_hue(*c, j.hue as f64));
                }
                _ => {}
            }
        }
    }
    if v.grayscale {
        img.iter_mut().for_each(|c| *c = [gray(*c); 3]);
    }
    // Separable gaussian blur with reflect padding.
    if v.blur_sigma > 0.0 {
        let r = ((s as f64 * cfg.blur.kernel_fraction as f64).floor() as usize / 2).max(1) as i64;
        let sigma = v.blur_sigma as f64;
        let weights: Vec<f64> = (-r..=r)
            .map(|k| (-0.5 * (k as f64 / sigma).powi(2)).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let pass = |img: &[[f64; 3]], horizontal: bool| -> Vec<[f64; 3]> {
            let mut out = vec![[0.0; 3]; s * s];
            for y in 0..s {
                for x in 0..s {
                    for (wi, k) in weights.iter().zip(-r..=r) {
                        let at = if horizontal {
                            y * s + reflect(x as i64 + k, s)
                        } else {
                            reflect(y as i64 + k, s) * s + x
                        };
                        for c in 0..3 {
                            out[y * s + x][c] += wi * img[at][c] / total;
                        }
                    }
                }
            }
            out
        };
        img = pass(&pass(&img, true), false);
    }
    if v.solarize {
        let t = cfg.solarize.threshold as f64;
        img.iter_mut()
            .for_each(|c| *c = c.map(|x| if x >= t { 1.0 - x } else { x }));
    }
    let mut out = vec![0.0; 3 * s * s];
    for (p, c) in img.iter().enumerate() {
        for ch in 0..3 {
            out[ch * s * s + p] = (c[ch] - cfg.mean[ch] as f64) / cfg.std[ch] as f64;
        }
    }
    out
}

/// How a check compares GPU and reference.
#[derive(Clone, Copy)]
enum Tol {
    Relative(f64),
    Absolute(f64),
}

/// Runs one transform on every source and output size against the reference.
fn check(
    name: &str,
    cfg: &AugmentConfig,
    tol: Tol,
    params: &dyn Fn(&mut Rng, usize, usize, usize) -> ViewParams,
) {
    let e = common::engine();
    let mut rng = Rng::new(name.len() as u64 * 7919);
    for &(h, w) in SOURCES {
        for &s in OUTPUTS {
            let pixels = random_pixels(&mut rng, N * h * w * 3);
            let vp: Vec<ViewParams> = (0..N).map(|i| params(&mut rng, h, w, i)).collect();
            let images = upload_images(&e, &pixels).unwrap();
            let out = augment_batch(&e, &images, h, w, &vp, cfg, s)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(out.shape(), &[N, 3, s, s]);
            let got = out.to_vec().unwrap();
            let want: Vec<f64> = (0..N)
                .flat_map(|i| {
                    let img = &pixels[i * h * w * 3..(i + 1) * h * w * 3];
                    reference_view(img, w, &vp[i], cfg, s)
                })
                .collect();
            let what = format!("{name} {h}x{w} -> {s}");
            match tol {
                Tol::Relative(rel) => assert_close_tol(&what, &got, &want, rel),
                Tol::Absolute(abs) => {
                    for (k, (&g, &r)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g as f64 - r).abs() <= abs,
                            "{what}[{k}]: gpu {g} vs reference {r}"
                        );
                    }
                }
            }
        }
    }
}

fn with_jitter(rng: &mut Rng, h: usize, w: usize, j: Jitter) -> ViewParams {
    ViewParams {
        crop: random_crop(rng, h, w),
        jitter: Some(j),
        ..ViewParams::identity(h, w)
    }
}

#[test]
fn identity_parameters_give_back_the_input_exactly() {
    let e = common::engine();
    let mut rng = Rng::new(1);
    for &(h, w) in &[(7, 7), (13, 13), (1, 1)] {
        let pixels: Vec<u8> = (0..N * h * w * 3).map(|_| rng.below(256) as u8).collect();
        let vp = vec![ViewParams::identity(h, w); N];
        let images = upload_images(&e, &pixels).unwrap();
        let got = augment_batch(&e, &images, h, w, &vp, &plain(), h)
            .unwrap()
            .to_vec()
            .unwrap();
        for i in 0..N {
            for p in 0..h * w {
                for c in 0..3 {
                    let want = pixels[(i * h * w + p) * 3 + c] as f32 / 255.0;
                    assert_eq!(got[(i * 3 + c) * h * w + p], want, "{h}x{w} image {i}");
                }
            }
        }
    }
}

#[test]
fn crop_and_bilinear_resize_match_reference() {
    check("crop", &plain(), Tol::Relative(1e-4), &|rng, h, w, i| {
        ViewParams {
            // One full-image box, one single-pixel box, one random box per batch.
            crop: match i {
                0 => CropBox::full(h, w),
                1 => CropBox {
                    x: w - 1,
                    y: h / 2,
                    w: 1,
                    h: 1,
                },
                _ => random_crop(rng, h, w),
            },
            ..ViewParams::identity(h, w)
        }
    });
}

#[test]
fn flip_matches_reference() {
    check("flip", &plain(), Tol::Relative(1e-4), &|rng, h, w, i| {
        ViewParams {
            crop: random_crop(rng, h, w),
            flip: i != 1,
            ..ViewParams::identity(h, w)
        }
    });
}

#[test]
fn brightness_matches_reference() {
    // Factors above 1 saturate some values at 1 (the clamp is part of the transform).
    let factors = [0.6, 1.37, 1.4];
    check(
        "brightness",
        &plain(),
        Tol::Relative(1e-4),
        &|rng, h, w, i| {
            with_jitter(
                rng,
                h,
                w,
                Jitter {
                    brightness: factors[i],
                    ..identity_jitter()
                },
            )
        },
    );
}

#[test]
fn contrast_matches_reference() {
    let factors = [0.6, 1.4, 0.0];
    check(
        "contrast",
        &plain(),
        Tol::Relative(1e-4),
        &|rng, h, w, i| {
            with_jitter(
                rng,
                h,
                w,
                Jitter {
                    contrast: factors[i],
                    ..identity_jitter()
                },
            )
        },
    );
}

#[test]
fn saturation_matches_reference() {
    let factors = [0.8, 1.2, 0.0];
    check(
        "saturation",
        &plain(),
        Tol::Relative(1e-4),
        &|rng, h, w, i| {
            with_jitter(
                rng,
                h,
                w,
                Jitter {
                    saturation: factors[i],
                    ..identity_jitter()
                },
            )
        },
    );
}

#[test]
fn hue_matches_reference() {
    let shifts = [0.1, -0.1, 0.5];
    // Absolute tolerance on [0, 1] values: the HSV round trip divides by (max - min) of the
    // pixel, so f32 rounding grows to ~1e-6 absolute on near-gray pixels, which is far more than
    // 1e-4 *relative* of a dark channel, yet invisible on a [0, 1] scale.
    check("hue", &plain(), Tol::Absolute(1e-4), &|rng, h, w, i| {
        with_jitter(
            rng,
            h,
            w,
            Jitter {
                hue: shifts[i],
                ..identity_jitter()
            },
        )
    });
}

#[test]
fn jitter_in_every_order_matches_reference() {
    // All 24 orders over the batches, so contrast (which needs the image's mean between passes)
    // sits in every position. Absolute tolerance because hue is involved (see hue test).
    let mut orders = Vec::new();
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let o = [a, b, c, d];
                    if (0..4).all(|k| o.contains(&k)) {
                        orders.push(o.map(|k| ALL_OPS[k]));
                    }
                }
            }
        }
    }
    let counter = std::cell::Cell::new(0);
    let params = |rng: &mut Rng, h, w, _| {
        let k = counter.get();
        counter.set(k + 1);
        let j = Jitter {
            brightness: rng.uniform(0.6, 1.4) as f32,
            contrast: rng.uniform(0.6, 1.4) as f32,
            saturation: rng.uniform(0.8, 1.2) as f32,
            hue: rng.uniform(-0.1, 0.1) as f32,
            order: orders[k % orders.len()],
        };
        with_jitter(rng, h, w, j)
    };
    check("jitter", &plain(), Tol::Absolute(1e-4), &params);
    check("jitter again", &plain(), Tol::Absolute(1e-4), &params);
    assert!(counter.get() >= orders.len(), "every order was used");
}

#[test]
fn grayscale_matches_reference() {
    check(
        "grayscale",
        &plain(),
        Tol::Relative(1e-4),
        &|rng, h, w, i| ViewParams {
            crop: random_crop(rng, h, w),
            grayscale: i != 0,
            ..ViewParams::identity(h, w)
        },
    );
}

#[test]
fn blur_matches_reference() {
    // One image of each batch is not blurred: the per-image sigma switches it off.
    let sigmas = [0.1, 1.3, 0.0];
    check("blur", &plain(), Tol::Relative(1e-4), &|rng, h, w, i| {
        ViewParams {
            crop: random_crop(rng, h, w),
            blur_sigma: sigmas[i],
            ..ViewParams::identity(h, w)
        }
    });
    let wide = AugmentConfig {
        blur: byol::data::augment::BlurConfig {
            kernel_fraction: 0.5,
            ..plain().blur
        },
        ..plain()
    };
    check("wide blur", &wide, Tol::Relative(1e-4), &|rng, h, w, _| {
        ViewParams {
            crop: random_crop(rng, h, w),
            blur_sigma: 2.0,
            ..ViewParams::identity(h, w)
        }
    });
}

#[test]
fn solarize_matches_reference() {
    // 0.31, not 0.3: bilinear weights hit 76.5 / 255 = 0.3 exactly, and the f32 threshold 0.3
    // lies above the f64 one, so the reference and the kernel would disagree on a tie.
    for threshold in [0.5, 0.31] {
        let cfg = AugmentConfig {
            solarize: byol::data::augment::SolarizeConfig { p: 0.0, threshold },
            ..plain()
        };
        check("solarize", &cfg, Tol::Relative(1e-4), &|rng, h, w, i| {
            ViewParams {
                crop: random_crop(rng, h, w),
                solarize: i != 2,
                ..ViewParams::identity(h, w)
            }
        });
    }
}

#[test]
fn normalize_matches_reference() {
    let cfg = AugmentConfig {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        ..AugmentConfig::none()
    };
    check("normalize", &cfg, Tol::Relative(1e-4), &|rng, h, w, _| {
        ViewParams {
            crop: random_crop(rng, h, w),
            ..ViewParams::identity(h, w)
        }
    });
}

#[test]
fn sampled_byol_views_match_reference() {
    // Everything on, parameters drawn by the sampler; absolute tolerance because of hue (see the
    // hue test), divided by the smallest std since the outputs are normalized.
    for (v, cfg) in AugmentConfig::byol().iter().enumerate() {
        let cfg = AugmentConfig {
            jitter: byol::data::augment::JitterConfig {
                p: 1.0,
                ..cfg.jitter.clone()
            },
            ..cfg.clone()
        };
        check(
            if v == 0 { "byol view 1" } else { "byol view 2" },
            &cfg,
            Tol::Absolute(1e-4 / 0.224),
            &|rng, h, w, _| cfg.sample(rng, h, w),
        );
    }
}

#[test]
fn two_views_upload_once_and_use_the_drawn_parameters() {
    let e = common::engine();
    let mut rng = Rng::new(5);
    let (h, w, s) = (9, 11, 8);
    let [c1, c2] = AugmentConfig::byol();
    let pixels = random_pixels(&mut rng, 2 * h * w * 3);
    let view_params = [
        (0..2)
            .map(|_| c1.sample(&mut rng, h, w))
            .collect::<Vec<_>>(),
        (0..2)
            .map(|_| c2.sample(&mut rng, h, w))
            .collect::<Vec<_>>(),
    ];
    let batch = HostBatch {
        pixels: pixels.clone(),
        indices: vec![0, 1],
        labels: vec![None, None],
        h,
        w,
        view_params: view_params.clone(),
        epoch: 0,
        start: 0,
    };
    let (a, b) = two_views(&e, &batch, &c1, &c2, s, Some(&mut rng)).unwrap();
    let images = upload_images(&e, &pixels).unwrap();
    for (got, (params, cfg)) in [a, b].iter().zip(view_params.iter().zip([&c1, &c2])) {
        let want = augment_batch(&e, &images, h, w, params, cfg, s).unwrap();
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());
    }
    // Without drawn parameters the views are drawn from the rng passed in.
    let bare = HostBatch {
        view_params: [Vec::new(), Vec::new()],
        ..batch
    };
    let (a, _) = two_views(&e, &bare, &c1, &c2, s, Some(&mut Rng::new(9))).unwrap();
    assert_eq!(a.shape(), &[2, 3, s, s]);
    // ... and without an rng either, that is an error naming the missing parameters.
    let err = two_views(&e, &bare, &c1, &c2, s, None).expect_err("no parameters, no rng");
    assert!(
        err.to_string().contains("no augmentation parameters"),
        "{err}"
    );
}

// ---- parameter sampling ------------------------------------------------------------------------

fn frequency(draws: &[ViewParams], f: impl Fn(&ViewParams) -> bool) -> f64 {
    draws.iter().filter(|v| f(v)).count() as f64 / draws.len() as f64
}

#[test]
fn sampling_respects_probabilities() {
    let [v1, v2] = AugmentConfig::byol();
    let draw = |cfg: &AugmentConfig, seed| {
        let mut rng = Rng::new(seed);
        (0..10_000)
            .map(|_| cfg.sample(&mut rng, 96, 96))
            .collect::<Vec<_>>()
    };
    let (d1, d2) = (draw(&v1, 1), draw(&v2, 2));
    let near = |what: &str, got: f64, p: f64| {
        assert!(
            (got - p).abs() <= 0.03,
            "{what}: frequency {got}, expected {p}"
        );
    };
    for (d, blur_p, solarize_p) in [(&d1, 1.0, 0.0), (&d2, 0.1, 0.2)] {
        near("flip", frequency(d, |v| v.flip), 0.5);
        near("jitter", frequency(d, |v| v.jitter.is_some()), 0.8);
        near("grayscale", frequency(d, |v| v.grayscale), 0.2);
        near("blur", frequency(d, |v| v.blur_sigma > 0.0), blur_p);
        near("solarize", frequency(d, |v| v.solarize), solarize_p);
    }
    let seed = AugmentConfig::seed_preset();
    assert_eq!(seed[0], seed[1]);
    let d = draw(&seed[0], 3);
    near("seed blur", frequency(&d, |v| v.blur_sigma > 0.0), 0.5);
    near("seed solarize", frequency(&d, |v| v.solarize), 0.0);
}

#[test]
fn sampling_respects_ranges() {
    let [cfg, _] = AugmentConfig::byol();
    let mut rng = Rng::new(4);
    let (h, w) = (96, 80);
    let mut fallbacks = 0;
    for _ in 0..5_000 {
        let v = cfg.sample(&mut rng, h, w);
        let c = v.crop;
        assert!(
            c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h,
            "{c:?}"
        );
        // Rounding the box to whole pixels moves area and aspect by up to a pixel per side.
        let area = (c.w * c.h) as f64 / (h * w) as f64;
        let lo_area = ((c.w + 1) * (c.h + 1)) as f64 / (h * w) as f64;
        assert!(
            lo_area >= 0.08 && area <= 1.0,
            "{c:?}: area fraction {area}"
        );
        let (lo_ratio, hi_ratio) = (
            (c.w + 1) as f64 / (c.h.max(2) - 1) as f64,
            (c.w.max(2) - 1) as f64 / (c.h + 1) as f64,
        );
        if c.w == w && c.h == h {
            fallbacks += 1;
        } else {
            assert!(
                lo_ratio >= 0.75 && hi_ratio <= 4.0 / 3.0,
                "{c:?}: aspect out of range"
            );
        }
        if let Some(j) = v.jitter {
            assert!((0.6..=1.4).contains(&j.brightness));
            assert!((0.6..=1.4).contains(&j.contrast));
            assert!((0.8..=1.2).contains(&j.saturation));
            assert!((-0.1..=0.1).contains(&j.hue));
            let mut o = j.order.map(|op| op as usize);
            o.sort();
            assert_eq!(o, [0, 1, 2, 3], "order is a permutation");
        }
        if v.blur_sigma > 0.0 {
            assert!((0.1..=2.0).contains(&v.blur_sigma));
        }
    }
    assert!(fallbacks < 500, "{fallbacks} full-image crops");
    // A source far outside the ratio range falls back to a center crop of the limit ratio.
    let strip = AugmentConfig {
        crop: Some(byol::data::augment::CropConfig {
            scale: (0.9, 1.0),
            ratio: (1.0, 1.0),
        }),
        ..AugmentConfig::none()
    };
    let v = strip.sample(&mut rng, 4, 40);
    assert_eq!(
        v.crop,
        CropBox {
            x: 18,
            y: 0,
            w: 4,
            h: 4
        }
    );
}

#[test]
fn everything_off_draws_identity_parameters() {
    let mut rng = Rng::new(6);
    for _ in 0..1000 {
        assert_eq!(
            AugmentConfig::none().sample(&mut rng, 7, 5),
            ViewParams::identity(7, 5)
        );
    }
    // Same seed, same parameters.
    let cfg = &AugmentConfig::byol()[1];
    let a: Vec<_> = (0..50)
        .scan(Rng::new(8), |r, _| Some(cfg.sample(r, 33, 17)))
        .collect();
    let b: Vec<_> = (0..50)
        .scan(Rng::new(8), |r, _| Some(cfg.sample(r, 33, 17)))
        .collect();
    assert_eq!(a, b);
    assert_eq!(blur_radius(224, 0.1), 11, "BYOL's 23-tap kernel at 224");
    assert_eq!(blur_radius(96, 0.1), 4);
    assert_eq!(blur_radius(8, 0.1), 1);
}

#[test]
fn bad_configs_and_arguments_are_errors() {
    let base = AugmentConfig::byol()[0].clone();
    let bad = [
        AugmentConfig {
            flip_p: -0.1,
            ..base.clone()
        },
        AugmentConfig {
            grayscale_p: 1.5,
            ..base.clone()
        },
        AugmentConfig {
            crop: Some(byol::data::augment::CropConfig {
                scale: (0.9, 0.5),
                ratio: (0.75, 1.33),
            }),
            ..base.clone()
        },
        AugmentConfig {
            blur: byol::data::augment::BlurConfig {
                sigma: (2.0, 0.1),
                ..base.blur.clone()
            },
            ..base.clone()
        },
        AugmentConfig {
            std: [0.2, 0.0, 0.2],
            ..base.clone()
        },
        AugmentConfig {
            jitter: byol::data::augment::JitterConfig {
                hue: 0.7,
                ..base.jitter.clone()
            },
            ..base.clone()
        },
    ];
    for cfg in &bad {
        assert!(
            matches!(cfg.validate(), Err(byol::Error::Invalid(_))),
            "{cfg:?}"
        );
    }
    assert!(base.validate().is_ok() && AugmentConfig::none().validate().is_ok());

    let e = common::engine();
    let images = upload_images(&e, &[1u8; 7 * 5 * 3]).unwrap();
    let id = [ViewParams::identity(7, 5)];
    assert!(matches!(
        augment_batch(&e, &images, 7, 5, &id, &base, 0),
        Err(byol::Error::Shape(_))
    ));
    assert!(augment_batch(&e, &images, 7, 5, &id, &bad[0], 4).is_err());
    // More images than the buffer holds, a crop leaving the source, a non-permutation order.
    assert!(augment_batch(&e, &images, 7, 5, &[id[0], id[0]], &base, 4).is_err());
    let outside = ViewParams {
        crop: CropBox {
            x: 3,
            y: 0,
            w: 3,
            h: 7,
        },
        ..id[0]
    };
    assert!(augment_batch(&e, &images, 7, 5, &[outside], &base, 4).is_err());
    let twice = ViewParams {
        jitter: Some(Jitter {
            order: [JitterOp::Hue; 4],
            ..identity_jitter()
        }),
        ..id[0]
    };
    assert!(augment_batch(&e, &images, 7, 5, &[twice], &base, 4).is_err());
    let floats = byol::Tensor::zeros(&e, &[27]).unwrap();
    assert!(augment_batch(&e, &floats, 7, 5, &id, &base, 4).is_err());
    assert!(upload_images(&e, &[]).is_err());
}

// ---- byol data show ----------------------------------------------------------------------------

/// Colored shapes on a gradient: crops, flips, color changes and blur are easy to see.
struct Shapes {
    size: usize,
    count: usize,
}

impl ImageSet for Shapes {
    fn name(&self) -> String {
        format!("shapes {}", self.count)
    }
    fn len(&self) -> usize {
        self.count
    }
    fn image_size(&self) -> (usize, usize) {
        (self.size, self.size)
    }
    fn classes(&self) -> Vec<String> {
        Vec::new()
    }
    fn label(&self, _: usize) -> Option<u32> {
        None
    }
    fn read_into(&self, i: usize, out: &mut [u8]) -> byol::Result<()> {
        let s = self.size as f64;
        let colors = [
            [230u8, 40, 40],
            [40, 200, 60],
            [50, 80, 230],
            [240, 200, 30],
        ];
        let color = colors[i % colors.len()];
        for y in 0..self.size {
            for x in 0..self.size {
                let (fx, fy) = (x as f64 / s, y as f64 / s);
                // A disc in the upper left, a bar on the right, a gradient background.
                let disc = (fx - 0.3).powi(2) + (fy - 0.3).powi(2) < 0.04;
                let bar = fx > 0.7 && fx < 0.85 && fy > 0.2;
                let px = if disc {
                    color
                } else if bar {
                    [250, 250, 250]
                } else {
                    [(fx * 120.0) as u8, (fy * 120.0) as u8, 90]
                };
                out[(y * self.size + x) * 3..][..3].copy_from_slice(&px);
            }
        }
        Ok(())
    }
}

#[test]
fn data_show_writes_a_grid_of_originals_and_views() {
    let e = common::engine();
    let dir = std::env::temp_dir().join(format!("byol-data-show-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("pairs.png");
    let set = Shapes {
        size: 32,
        count: 12,
    };
    byol::cli::data_show::show_set(&e, &set, &out, 4, 0).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    // 32-pixel images are shown 3x: 96-pixel cells, 4-pixel gaps, a header row of column names
    // (18 pixels: 2x font and two gaps), no class names (the set has no labels).
    let header: usize = 7 * 2 + 2 * 4;
    assert_eq!(
        img.dimensions(),
        (3 * 96 + 4 * 4, (header + 4 * 96 + 4 * 4) as u32)
    );
    // The first cell is the original image, enlarged.
    let mut original = vec![0u8; 32 * 32 * 3];
    set.read_into(0, &mut original).unwrap();
    assert_eq!(
        img.get_pixel(4 + 3 * 10, (header + 3 * 9) as u32).0,
        original[(9 * 32 + 10) * 3..][..3]
    );
    // The header names the columns: some pixels there are ink.
    let ink = (0..img.width())
        .flat_map(|x| (4..4 + 14).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 == [230, 230, 230])
        .count();
    assert!(ink > 50, "no column headers drawn");

    // A labeled set shows one image of every class, its name at the left of its row.
    let labeled = byol::data::open("synthetic:40:32", byol::data::Split::Pretrain).unwrap();
    byol::cli::data_show::show_set(&e, &*labeled, &out, 16, 0).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    let classes = labeled.classes().len();
    assert_eq!(classes, 10);
    assert_eq!(
        img.height() as usize,
        header + classes * (96 + 4),
        "one row per class"
    );
    assert!(img.width() > 3 * 96 + 4 * 4, "room for the class names");
    if let Ok(keep) = std::env::var("BYOL_KEEP_SHOW") {
        std::fs::copy(&out, keep).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
