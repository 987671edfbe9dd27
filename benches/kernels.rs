//! Kernel throughput: `cargo bench --bench kernels [-- FILTER] [--samples N] [--batch N]
//! [--matmul blocked|tiled|vec4-wide|vec4-rows|vec4-rows-wide|texture|texture-wide|texture-rows-wide] [--conv direct|direct-uniform|unfold] [--tune]`.
//! With `--tune` each product and convolution pass runs the kernel measured fastest for its shape
//! (the tune cache, see `byol tune`), and the choices are listed at the end.
//!
//! For each kernel and shape: the median GPU time over N runs (20 by default) after warm-up,
//! measured with timestamp queries where the adapter has them (wall clock around a sync otherwise),
//! and GFLOP/s (matmul) or GB/s (memory-bound kernels, counting bytes read and written once).

use byol::ops::conv2d::{conv2d_backward_input, conv2d_backward_weight};
use byol::ops::BatchNormState;
use byol::ops::{self, matmul::gemm};
use byol::rng::Rng;
use byol::{ConvVariant, Engine, EngineOptions, MatmulVariant, ParamSet, Tensor, TuneMode};
use std::cell::RefCell;
use std::rc::Rc;

struct Case {
    name: String,
    shape: String,
    /// FLOPs (for compute-bound kernels) or bytes moved (for memory-bound ones).
    work: f64,
    compute_bound: bool,
    run: Box<dyn Fn() -> byol::Result<Tensor>>,
}

fn random(e: &Engine, rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
    Tensor::from_slice(e, &v, shape).expect("upload")
}

#[allow(clippy::too_many_arguments)] // the numbers that define one product
fn matmul_case(
    e: &Engine,
    rng: &mut Rng,
    label: &str,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) -> Case {
    let a = random(e, rng, &if ta { [k, m] } else { [m, k] });
    let b = random(e, rng, &if tb { [n, k] } else { [k, n] });
    let op = match (ta, tb) {
        (false, false) => "A·B",
        (true, false) => "Aᵀ·B",
        (false, true) => "A·Bᵀ",
        (true, true) => "Aᵀ·Bᵀ",
    };
    Case {
        name: format!("matmul {op}"),
        shape: format!("{m}x{n}x{k} {label}"),
        work: 2.0 * (m * n * k) as f64,
        compute_bound: true,
        run: Box::new(move || gemm(&a, &b, ta, tb)),
    }
}

/// The distinct convolutions of ResNet-18: (label, C, O, kernel, stride, pad, input size).
/// ResNet-18's distinct convolutions at `input` px with channels scaled by 1 / `shrink` (8: the
/// CPU-sized main job's width 1/8).
fn resnet_convs(
    input: usize,
    imagenet_stem: bool,
    shrink: usize,
) -> Vec<(String, usize, usize, usize, usize, usize, usize)> {
    let mut v = Vec::new();
    let mut size = input;
    let w0 = 64 / shrink;
    if imagenet_stem {
        v.push(("stem 7x7/2".to_string(), 3, w0, 7, 2, 3, size));
        size = size / 2 / 2; // stride-2 conv, then the 3x3/2 max pool
    } else {
        v.push(("stem 3x3".to_string(), 3, w0, 3, 1, 1, size));
    }
    v.push(("layer1 3x3".into(), w0, w0, 3, 1, 1, size));
    let mut c = w0;
    for (layer, o) in [(2, 2 * w0), (3, 4 * w0), (4, 8 * w0)] {
        v.push((format!("layer{layer} 3x3/2"), c, o, 3, 2, 1, size));
        v.push((format!("layer{layer} 1x1/2 shortcut"), c, o, 1, 2, 0, size));
        size = size.div_ceil(2);
        v.push((format!("layer{layer} 3x3"), o, o, 3, 1, 1, size));
        c = o;
    }
    v
}

fn conv_cases(e: &Engine, r: &mut Rng, batch: usize) -> Vec<Case> {
    let mut v = Vec::new();
    // 32 px at width 1/4 is the step bench's small config (batch 128), 16 px at width 1/8 the
    // CPU-sized main job (its batch is 32: `--batch 32`).
    for (input, imagenet, shrink) in [
        (96, true, 1),
        (32, false, 1),
        (32, false, 4),
        (16, false, 8),
    ] {
        for (label, c, o, k, stride, pad, size) in resnet_convs(input, imagenet, shrink) {
            let x = random(e, r, &[batch, c, size, size]);
            let w = random(e, r, &[o, c, k, k]);
            let out = (size + 2 * pad - k) / stride + 1;
            let flops = 2.0 * (batch * o * out * out * c * k * k) as f64;
            let width = if shrink == 1 {
                String::new()
            } else {
                format!(" w1/{shrink}")
            };
            let shape = format!("{input}px{width} b{batch} {label} {c}->{o} @{size}");
            let (x1, w1) = (x.clone(), w.clone());
            v.push(Case {
                name: "conv2d fwd".into(),
                shape: shape.clone(),
                work: flops,
                compute_bound: true,
                run: Box::new(move || ops::conv2d(&x1, &w1, None, stride, pad)),
            });
            // Backward passes alone, from a fixed output gradient.
            let dy = random(e, r, &[batch, o, out, out]);
            let (w2, dy2, xs) = (w.clone(), dy.clone(), x.shape().to_vec());
            v.push(Case {
                name: "conv2d bwd-input".into(),
                shape: shape.clone(),
                work: flops,
                compute_bound: true,
                run: Box::new(move || conv2d_backward_input(&xs, &w2, &dy2, stride, pad)),
            });
            let ws = w.shape().to_vec();
            v.push(Case {
                name: "conv2d bwd-weight".into(),
                shape,
                work: flops,
                compute_bound: true,
                run: Box::new(move || conv2d_backward_weight(&x, &ws, &dy, stride, pad)),
            });
        }
    }
    v
}

/// ResNet-18's parameter tensors (11.2 M floats): every conv weight with its batch-norm scale and
/// shift. The optimizer and EMA benches update them all.
fn resnet18_param_specs() -> Vec<(String, Vec<usize>)> {
    let mut convs = vec![vec![64, 3, 7, 7]];
    let mut c = 64;
    for o in [64, 128, 256, 512] {
        convs.push(vec![o, c, 3, 3]);
        convs.push(vec![o, o, 3, 3]);
        if o != c {
            convs.push(vec![o, c, 1, 1]);
        }
        convs.push(vec![o, o, 3, 3]);
        convs.push(vec![o, o, 3, 3]);
        c = o;
    }
    let mut specs = Vec::new();
    for (i, shape) in convs.into_iter().enumerate() {
        let o = shape[0];
        specs.push((format!("conv{i}.weight"), shape));
        specs.push((format!("bn{i}.weight"), vec![o]));
        specs.push((format!("bn{i}.bias"), vec![o]));
    }
    specs
}

fn param_cases(e: &Engine) -> Vec<Case> {
    let specs = resnet18_param_specs();
    let spec_refs: Vec<(&str, &[usize])> = specs
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let online = ParamSet::zeros(e, &spec_refs).expect("params");
    online.set_requires_grad(true);
    let target = online.duplicate(false).expect("target");
    let count: usize = online.tensors().iter().map(Tensor::numel).sum();
    // One backward gives every parameter a gradient, reused by every timed step.
    let grads = {
        let mut total = ops::sum(&online.tensors()[0]).expect("sum");
        for t in &online.tensors()[1..] {
            total = ops::add(&total, &ops::sum(t).expect("sum")).expect("add");
        }
        Rc::new(e.backward(&total).expect("backward"))
    };
    let shape = format!(
        "ResNet-18, {} tensors, {:.1} M params",
        online.len(),
        count as f64 / 1e6
    );
    let mut v = Vec::new();
    let (t1, o1) = (target.clone(), online.clone());
    v.push(Case {
        name: "ema update".into(),
        shape: shape.clone(),
        work: 12.0 * count as f64,
        compute_bound: false,
        run: Box::new(move || byol::optim::ema_update(&t1, &o1, 0.996).map(|_| t1.flat().clone())),
    });
    let sgd = RefCell::new(byol::optim::Optimizer::sgd(&online, 0.9, 1e-4).expect("sgd"));
    let (g1, o2) = (grads.clone(), online.clone());
    v.push(Case {
        name: "sgd step".into(),
        shape: shape.clone(),
        // Reads parameter, gradient and momentum, writes parameter and momentum.
        work: 20.0 * count as f64,
        compute_bound: false,
        run: Box::new(move || sgd.borrow_mut().step(&g1, 0.1).map(|_| o2.flat().clone())),
    });
    let lars = RefCell::new(byol::optim::Optimizer::lars(&online, 0.9, 1e-6).expect("lars"));
    let (g2, o3) = (grads, online);
    v.push(Case {
        name: "lars step".into(),
        shape,
        work: 20.0 * count as f64,
        compute_bound: false,
        run: Box::new(move || lars.borrow_mut().step(&g2, 0.1).map(|_| o3.flat().clone())),
    });
    v
}

fn norm_cases(e: &Engine, r: &mut Rng, batch: usize) -> Vec<Case> {
    // The largest activation of ResNet-18 at 96x96: the stem's output, [batch, 64, 48, 48].
    let x = random(e, r, &[batch, 64, 48, 48]);
    let gamma = random(e, r, &[64]);
    let beta = random(e, r, &[64]);
    let state = BatchNormState::new(e, 64).expect("state");
    let n = x.numel() as f64;
    let shape = format!("{batch}x64x48x48");
    let (x1, g1, b1, s1) = (x.clone(), gamma.clone(), beta.clone(), state.clone());
    let eng = e.clone();
    vec![
        Case {
            name: "batch_norm fwd (train)".into(),
            shape: shape.clone(),
            // Statistics read x twice, normalization reads it once more and writes y.
            work: 16.0 * n,
            compute_bound: false,
            run: Box::new(move || {
                let _ng = x1.engine().no_grad();
                ops::batch_norm(&x1, Some(&g1), Some(&b1), &s1, true)
            }),
        },
        Case {
            name: "batch_norm fwd+bwd (train)".into(),
            shape,
            // Forward as above, backward reads x and dy twice and writes dx.
            work: 36.0 * n,
            compute_bound: false,
            run: Box::new(move || {
                x.set_requires_grad(true);
                let y = ops::batch_norm(&x, Some(&gamma), Some(&beta), &state, true)?;
                let dy = y.empty_like()?;
                let mut g = eng.backward_from(&y, dy)?;
                Ok(g.remove(&x).expect("dx"))
            }),
        },
    ]
}

fn cases(e: &Engine) -> Vec<Case> {
    let mut rng = Rng::new(1);
    let r = &mut rng;
    let mut v = vec![
        matmul_case(e, r, "", 256, 256, 256, false, false),
        matmul_case(e, r, "", 1024, 1024, 1024, false, false),
        matmul_case(e, r, "", 1024, 1024, 1024, true, false),
        matmul_case(e, r, "", 1024, 1024, 1024, false, true),
        matmul_case(e, r, "", 4096, 4096, 1024, false, false),
        // BYOL projection head at batch 256: 512 -> 4096 -> 256, forward and both gradients.
        matmul_case(e, r, "head fc1 fwd", 256, 4096, 512, false, false),
        matmul_case(e, r, "head fc1 dW", 512, 4096, 256, true, false),
        matmul_case(e, r, "head fc1 dX", 256, 512, 4096, false, true),
        matmul_case(e, r, "head fc2 fwd", 256, 256, 4096, false, false),
        matmul_case(e, r, "head fc2 dW", 4096, 256, 256, true, false),
        matmul_case(e, r, "head fc2 dX", 256, 4096, 256, false, true),
        // The products of unfolded convolutions at the small step config (32 px, width 1/4,
        // batch 128): few rows (output channels), many columns (pixels of the batch).
        matmul_case(e, r, "unfold layer1 fwd", 16, 131072, 144, false, false),
        matmul_case(e, r, "unfold layer1 dcol", 144, 131072, 16, true, false),
        matmul_case(e, r, "unfold layer1 dW", 16, 144, 131072, false, true),
        matmul_case(e, r, "unfold layer3 fwd", 64, 8192, 576, false, false),
        // The unfolded three-channel stem (K = 27, not a multiple of 4: no vec4 loads), forward
        // and weight gradient.
        matmul_case(e, r, "unfold stem fwd", 16, 131072, 27, false, false),
        matmul_case(e, r, "unfold stem dW", 16, 27, 131072, false, true),
        // An odd head (no dimension a multiple of 4).
        matmul_case(e, r, "odd", 257, 1023, 511, false, false),
    ];
    let n = 1 << 24;
    let (x, y) = (random(e, r, &[n]), random(e, r, &[n]));
    let (x2, y2) = (x.clone(), y.clone());
    v.push(Case {
        name: "add".into(),
        shape: format!("{n}"),
        work: 12.0 * n as f64,
        compute_bound: false,
        run: Box::new(move || ops::add(&x2, &y2)),
    });
    let x3 = x.clone();
    v.push(Case {
        name: "relu".into(),
        shape: format!("{n}"),
        work: 8.0 * n as f64,
        compute_bound: false,
        run: Box::new(move || ops::relu(&x3)),
    });
    let x4 = x.clone();
    v.push(Case {
        name: "sum (all)".into(),
        shape: format!("{n}"),
        work: 4.0 * n as f64,
        compute_bound: false,
        run: Box::new(move || ops::sum(&x4)),
    });
    let act = random(e, r, &[256, 64, 32, 32]);
    let bias = random(e, r, &[64]);
    v.push(Case {
        name: "bias_add".into(),
        shape: "256x64x32x32".into(),
        work: 8.0 * act.numel() as f64,
        compute_bound: false,
        run: Box::new(move || ops::bias_add(&act, &bias)),
    });
    let act2 = random(e, r, &[256, 64, 32, 32]);
    v.push(Case {
        name: "sum over batch".into(),
        shape: "256x(64x32x32)".into(),
        work: 4.0 * act2.numel() as f64,
        compute_bound: false,
        run: Box::new(move || ops::sum_axis(&act2, 0)),
    });
    // Collapse diagnostic: Gram of the smaller side (counted as the work) plus the one-workgroup
    // Jacobi eigensolver, whose time dominates.
    for (n, d) in [(256, 512), (512, 128)] {
        let z = random(e, r, &[n, d]);
        v.push(Case {
            name: "effective_rank".into(),
            shape: format!("{n}x{d}"),
            work: 2.0 * (n * d * n.min(d)) as f64,
            compute_bound: true,
            run: Box::new(move || ops::effective_rank(&z)),
        });
    }
    v
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    byol::device::quiet_device_select_layer();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut samples = 20usize;
    let mut filter: Option<String> = None;
    let mut variant = MatmulVariant::Auto;
    let mut conv = ConvVariant::Auto;
    let mut tune = TuneMode::Off;
    let mut batch = 256usize;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--bench" => {}
            "--samples" => {
                i += 1;
                samples = args
                    .get(i)
                    .and_then(|s| s.parse::<usize>().ok())
                    .expect("--samples N")
                    .max(1);
            }
            "--batch" => {
                i += 1;
                batch = args
                    .get(i)
                    .and_then(|s| s.parse::<usize>().ok())
                    .expect("--batch N")
                    .max(1);
            }
            "--matmul" => {
                i += 1;
                variant = match args.get(i).map(String::as_str) {
                    Some("blocked") => MatmulVariant::Blocked,
                    Some("tiled") => MatmulVariant::Tiled,
                    Some("vec4-wide") => MatmulVariant::Vec4Wide,
                    Some("vec4-rows") => MatmulVariant::Vec4Rows,
                    Some("vec4-rows-wide") => MatmulVariant::Vec4RowsWide,
                    Some("texture") => MatmulVariant::Texture,
                    Some("texture-wide") => MatmulVariant::TextureWide,
                    Some("texture-rows-wide") => MatmulVariant::TextureRowsWide,
                    _ => panic!(
                        "--matmul blocked|tiled|vec4-wide|vec4-rows|vec4-rows-wide|texture|texture-wide|texture-rows-wide"
                    ),
                };
            }
            "--tune" => tune = TuneMode::On,
            "--conv" => {
                i += 1;
                conv = match args.get(i).map(String::as_str) {
                    Some("direct") => ConvVariant::Direct,
                    Some("direct-uniform") => ConvVariant::DirectUniform,
                    Some("unfold") => ConvVariant::Unfold,
                    _ => panic!("--conv direct|direct-uniform|unfold"),
                };
            }
            s if !s.starts_with('-') => filter = Some(s.to_lowercase()),
            _ => {}
        }
        i += 1;
    }
    let engine = Engine::new(EngineOptions {
        matmul: variant,
        conv,
        tune,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!(
        "adapter: {}  matmul kernel: {:?}  conv: {:?}  samples: {samples}",
        engine.adapter_name(),
        engine.matmul_variant(),
        engine.conv_variant()
    );
    println!("| kernel | shape | median | throughput | timer |");
    println!("|---|---|---|---|---|");
    let mut all = cases(&engine);
    all.extend(conv_cases(&engine, &mut Rng::new(2), batch));
    all.extend(norm_cases(&engine, &mut Rng::new(3), batch));
    all.extend(param_cases(&engine));
    for case in all {
        let label = format!("{} {}", case.name, case.shape).to_lowercase();
        if filter.as_ref().is_some_and(|f| !label.contains(f)) {
            continue;
        }
        let mut times = Vec::with_capacity(samples);
        let mut timer = "";
        for i in 0..samples + 2 {
            let (out, secs, ts) = engine.time_gpu(|| (case.run)()).expect("kernel run");
            drop(out);
            timer = if ts { "timestamps" } else { "wall clock" };
            if i >= 2 {
                times.push(secs); // the first two runs compile pipelines and warm caches
            }
        }
        let t = median(times);
        let rate = case.work / t / 1e9;
        let unit = if case.compute_bound {
            "GFLOP/s"
        } else {
            "GB/s"
        };
        println!(
            "| {} | {} | {:.3} ms | {:.2} {unit} | {timer} |",
            case.name,
            case.shape,
            t * 1e3,
            rate
        );
    }
    if tune == TuneMode::On {
        println!();
        println!("| pass and shape | kernel | from |");
        println!("|---|---|---|");
        for c in engine.kernel_choices() {
            println!("| {} | {} | {:?} |", c.key, c.kernel, c.source);
        }
    }
}
