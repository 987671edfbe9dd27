//! Kernel choice by measurement (`engine::tune`): a convolution's three passes and a matmul's
//! kernel are timed on the adapter the first time a shape is met, the choice lands in the cache file, a second engine
//! takes it from there, pinned choices win over both, tuning off takes the static defaults, a
//! broken cache file is measured over, and whatever was chosen computes exactly what that kernel
//! forced computes (the timing runs write nothing the op returns).

mod common;
use byol::engine::{ChoiceSource, KernelChoice};
use byol::rng::Rng;
use byol::{ops, ConvVariant, Engine, EngineOptions, MatmulVariant, Tensor, TuneMode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cache_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("byol-tune-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tune.json")
}

/// The convolution tests hold the matmul kernel fixed, so only the convolution passes are tuned.
fn engine(tune: TuneMode, cache: &Path, conv: ConvVariant) -> Engine {
    common::engine_with(EngineOptions {
        tune,
        tune_cache: Some(cache.to_path_buf()),
        conv,
        matmul: MatmulVariant::Blocked,
        ..Default::default()
    })
}

/// Forward and both gradients of one stride-2 3x3 convolution: (y, dx, dw) as host vectors.
fn conv_pass(e: &Engine) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(7);
    let mut rand =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect() };
    let x = Tensor::from_slice(e, &rand(2 * 8 * 9 * 9), &[2, 8, 9, 9]).unwrap();
    let w = Tensor::from_slice(e, &rand(12 * 8 * 9), &[12, 8, 3, 3]).unwrap();
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    let y = ops::conv2d(&x, &w, None, 2, 1).unwrap();
    let loss = ops::sum(&ops::mul(&y, &y).unwrap()).unwrap();
    let grads = e.backward(&loss).unwrap();
    let get = |t: &Tensor| grads.get(t).unwrap().to_vec().unwrap();
    (y.to_vec().unwrap(), get(&x), get(&w))
}

fn conv_choices(e: &Engine) -> Vec<KernelChoice> {
    e.kernel_choices()
        .into_iter()
        .filter(|c| c.key.starts_with("conv2d"))
        .collect()
}

fn forced(kernel: &str) -> ConvVariant {
    match kernel {
        "unfold" => ConvVariant::Unfold,
        "direct" => ConvVariant::Direct,
        "direct-uniform" => ConvVariant::DirectUniform,
        k => panic!("unknown kernel {k}"),
    }
}

#[test]
fn passes_are_measured_cached_and_compute_what_their_kernel_computes() {
    let cache = cache_path("measure");
    let e = engine(TuneMode::On, &cache, ConvVariant::Auto);
    let tuned = conv_pass(&e);
    let choices = conv_choices(&e);
    assert_eq!(
        choices.len(),
        3,
        "forward, input and weight gradient: {choices:?}"
    );
    for c in &choices {
        assert_eq!(c.source, ChoiceSource::Measured, "{c:?}");
        // Direct and unfolded everywhere; the barrier-free forward also with uniform weight
        // windows.
        let uniform = e.gpu().is_software() && c.key.contains("forward");
        let want = if uniform { 3 } else { 2 };
        assert_eq!(c.timings.len(), want, "every candidate timed: {c:?}");
        assert!(
            c.timings
                .iter()
                .all(|(_, t)| t.as_ref().is_ok_and(|s| *s > 0.0)),
            "{c:?}"
        );
    }
    let text = std::fs::read_to_string(&cache).expect("the cache file is written");
    for c in &choices {
        assert!(text.contains(&c.key), "{} missing from {text}", c.key);
    }
    // A second engine reads the choices and measures nothing.
    let again = engine(TuneMode::On, &cache, ConvVariant::Auto);
    let second = conv_pass(&again);
    for (a, b) in choices.iter().zip(conv_choices(&again)) {
        assert_eq!((&a.key, &a.kernel), (&b.key, &b.kernel));
        assert_eq!(b.source, ChoiceSource::Cache);
        assert!(b.timings.is_empty());
    }
    assert_eq!(tuned, second, "the same kernels give the same bits");
    // The timing runs wrote nothing the op returns: an engine that never timed anything, told the
    // same kernels, computes the same bits.
    let pins: BTreeMap<String, String> = choices
        .iter()
        .map(|c| (c.key.clone(), c.kernel.clone()))
        .collect();
    let untimed = engine(TuneMode::Off, &cache, ConvVariant::Auto);
    untimed.pin_kernels(&pins);
    assert_eq!(conv_pass(&untimed), tuned);
}

#[test]
fn pinned_choices_win_and_reproduce_the_forced_kernel() {
    let cache = cache_path("pinned");
    let probe = engine(TuneMode::Off, &cache, ConvVariant::Auto);
    conv_pass(&probe);
    for kernel in ["direct", "unfold", "direct-uniform"] {
        // Only the forward has the uniform form among its candidates: a pin the others do not
        // know is ignored, so they are pinned to direct.
        let serves = |key: &str| kernel != "direct-uniform" || key.contains("forward");
        let pins: BTreeMap<String, String> = conv_choices(&probe)
            .into_iter()
            .map(|c| {
                let k = if serves(&c.key) { kernel } else { "direct" };
                (c.key, k.to_string())
            })
            .collect();
        let e = engine(TuneMode::On, &cache, ConvVariant::Auto);
        e.pin_kernels(&pins);
        let got = conv_pass(&e);
        for c in conv_choices(&e) {
            let want = if serves(&c.key) { kernel } else { "direct" };
            assert_eq!((c.kernel.as_str(), c.source), (want, ChoiceSource::Run));
        }
        let f = engine(TuneMode::Off, &cache, forced(kernel));
        assert_eq!(got, conv_pass(&f), "pinned {kernel}");
    }
    assert!(
        !cache.exists(),
        "nothing was measured, so nothing was cached"
    );
}

#[test]
fn tuning_off_takes_the_static_defaults_and_writes_no_cache() {
    let cache = cache_path("off");
    let e = engine(TuneMode::Off, &cache, ConvVariant::Auto);
    conv_pass(&e);
    let choices = conv_choices(&e);
    assert_eq!(choices.len(), 3);
    for c in &choices {
        assert_eq!(c.source, ChoiceSource::Default);
        let software = e.gpu().is_software();
        let want = match () {
            _ if software && c.key.contains("input-grad") => "unfold",
            _ if software && c.key.contains("forward") => "direct-uniform",
            _ => "direct",
        };
        assert_eq!(c.kernel, want, "{}", c.key);
    }
    assert!(!cache.exists());
    assert_eq!(e.tune_cache_file(), None);
}

#[test]
fn a_broken_cache_file_is_measured_over() {
    for junk in ["{ not json", "{\"format\": \"something else\"}", ""] {
        let cache = cache_path("broken");
        std::fs::write(&cache, junk).unwrap();
        let e = engine(TuneMode::On, &cache, ConvVariant::Auto);
        conv_pass(&e);
        assert!(conv_choices(&e)
            .iter()
            .all(|c| c.source == ChoiceSource::Measured));
        let text = std::fs::read_to_string(&cache).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).expect("rewritten as JSON");
        assert_eq!(v["format"], "byol-wgpu tune cache 1");
    }
}

#[test]
fn a_product_runs_the_kernel_measured_fastest_and_computes_what_it_computes() {
    let cache = cache_path("matmul");
    let e = common::engine_with(EngineOptions {
        tune: TuneMode::On,
        tune_cache: Some(cache.clone()),
        ..Default::default()
    });
    let mut rng = Rng::new(9);
    let mut rand =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect() };
    let (a, b) = (rand(36 * 20), rand(20 * 44));
    let product = |e: &Engine| {
        let ta = Tensor::from_slice(e, &a, &[36, 20]).unwrap();
        let tb = Tensor::from_slice(e, &b, &[20, 44]).unwrap();
        ops::matmul(&ta, &tb).unwrap().to_vec().unwrap()
    };
    let tuned = product(&e);
    let choices: Vec<KernelChoice> = e
        .kernel_choices()
        .into_iter()
        .filter(|c| c.key.starts_with("matmul"))
        .collect();
    assert_eq!(choices.len(), 1, "{choices:?}");
    let c = &choices[0];
    assert_eq!(c.source, ChoiceSource::Measured);
    // Every kernel that can read aligned operands: four vec4 shapes, the tiles and, where the
    // adapter has operand textures, the three texture kernels.
    let textures = if e.has_operand_textures() { 3 } else { 0 };
    assert_eq!(c.timings.len(), 5 + textures, "{c:?}");
    let variant = match c.kernel.as_str() {
        "vec4" => MatmulVariant::Blocked,
        "vec4-wide" => MatmulVariant::Vec4Wide,
        "vec4-rows" => MatmulVariant::Vec4Rows,
        "vec4-rows-wide" => MatmulVariant::Vec4RowsWide,
        "tiled" => MatmulVariant::Tiled,
        "texture" => MatmulVariant::Texture,
        "texture-wide" => MatmulVariant::TextureWide,
        "texture-rows-wide" => MatmulVariant::TextureRowsWide,
        k => panic!("unknown kernel {k}"),
    };
    let forced = common::engine_with(EngineOptions {
        matmul: variant,
        ..Default::default()
    });
    assert_eq!(tuned, product(&forced), "{}", c.kernel);
}
