//! Kernel throughput: `cargo bench --bench kernels [-- FILTER] [--samples N]`.
//!
//! For each kernel and shape: the median GPU time over N runs (20 by default) after warm-up,
//! measured with timestamp queries where the adapter has them (wall clock around a sync otherwise),
//! and GFLOP/s (matmul) or GB/s (memory-bound kernels, counting bytes read and written once).

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
    for case in cases(&engine) {
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
