//! Kernel throughput: `cargo bench --bench kernels [-- FILTER] [--samples N] [--batch N]`.
//!
//! For each kernel and shape: the median GPU time over N runs (20 by default) after warm-up,
//! measured with timestamp queries where the adapter has them (wall clock around a sync otherwise),
//! and GFLOP/s (matmul) or GB/s (memory-bound kernels, counting bytes read and written once).

use byol::ops::conv2d::{conv2d_backward_input, conv2d_backward_weight};
use byol::ops::{self, matmul::gemm};
use byol::rng::Rng;
use byol::{Engine, EngineOptions, MatmulVariant, Tensor};

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
fn resnet_convs(
    input: usize,
    imagenet_stem: bool,
) -> Vec<(String, usize, usize, usize, usize, usize, usize)> {
    let mut v = Vec::new();
    let mut size = input;
    if imagenet_stem {
        v.push(("stem 7x7/2".to_string(), 3, 64, 7, 2, 3, size));
        size = size / 2 / 2; // stride-2 conv, then the 3x3/2 max pool
    } else {
        v.push(("stem 3x3".to_string(), 3, 64, 3, 1, 1, size));
    }
    v.push(("layer1 3x3".into(), 64, 64, 3, 1, 1, size));
    let mut c = 64;
    for (layer, o) in [(2, 128), (3, 256), (4, 512)] {
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
    for (input, imagenet) in [(96, true), (32, false)] {
        for (label, c, o, k, stride, pad, size) in resnet_convs(input, imagenet) {
            let x = random(e, r, &[batch, c, size, size]);
            let w = random(e, r, &[o, c, k, k]);
            let out = (size + 2 * pad - k) / stride + 1;
            let flops = 2.0 * (batch * o * out * out * c * k * k) as f64;
            let shape = format!("{input}px b{batch} {label} {c}->{o} @{size}");
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
    v
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut samples = 20usize;
    let mut filter: Option<String> = None;
    let mut variant = MatmulVariant::Auto;
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
                    _ => panic!("--matmul blocked|tiled"),
                };
            }
            s if !s.starts_with('-') => filter = Some(s.to_lowercase()),
            _ => {}
        }
        i += 1;
    }
    let engine = Engine::new(EngineOptions {
        matmul: variant,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!(
        "adapter: {}  matmul kernel: {:?}  samples: {samples}",
        engine.adapter_name(),
        engine.matmul_variant()
    );
    println!("| kernel | shape | median | throughput | timer |");
    println!("|---|---|---|---|---|");
    let mut all = cases(&engine);
    all.extend(conv_cases(&engine, &mut Rng::new(2), batch));
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
}
