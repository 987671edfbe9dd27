//! Ops whose kernels loop over a long axis, at sizes past the point where software Vulkan
//! (llvmpipe) silently ends an invocation's loops: 65535 iterations in all (see
//! `ops::SOFTWARE_LOOP_LIMIT`). Each shape here crosses that limit in the kernel's longest loop, so
//! on llvmpipe an op that did not split its work would return a wrong answer. Shapes are long but
//! thin, to stay fast there.
//!
//! Long sums use positive inputs where the result is compared to 1e-4: with terms of one sign an
//! f32 running sum over 70,000 terms stays within a few 1e-6 of the f64 sum, while random signs
//! could cancel to a result far smaller than its rounding error.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, ParamSet, Tensor};
use common::conv_ref::Conv;
use common::gemm_ref::cpu_gemm;
use common::l2_ref::{normalize, normalize_backward};
use common::loss_ref::{
    byol_backward, byol_forward, ce_backward, ce_forward, info_nce_backward, info_nce_forward,
};
use common::{assert_close, rand_vec, to_f32, upload, OpCheck};

/// Past the software limit of 65535 iterations.
const LONG: usize = 70_000;

/// Values in [0.1, 1]: sums of them never cancel.
fn positive_vec(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(0.1, 1.0)).collect()
}

fn check_matmul(m: usize, k: usize, n: usize, seed: u64) {
    let e = common::engine();
    let mut rng = Rng::new(seed);
    let a = common::as_f32_values(&positive_vec(&mut rng, m * k));
    let b = common::as_f32_values(&positive_vec(&mut rng, k * n));
    let c = ops::matmul(
        &upload(&e, &a, &[m, k], false),
        &upload(&e, &b, &[k, n], false),
    )
    .unwrap();
    assert_close(
        &format!("matmul {m}x{k}x{n}"),
        &c.to_vec().unwrap(),
        &cpu_gemm(&a, &b, m, n, k, false, false),
    );
}

#[test]
fn matmul_with_a_long_k_sums_every_term() {
    // An odd K takes the scalar kernel (one iteration per k); a K that is a multiple of 4 with
    // N = 4 the vec4 kernel (one per 4 k), which needs K > 4 * 65535.
    check_matmul(3, 270_000, 4, 2);
    check_matmul(3, LONG + 1, 5, 1);
}

// ---- row-wise losses over long rows ------------------------------------------------------------

#[test]
fn l2_normalize_of_long_rows_matches_reference() {
    let mut rng = Rng::new(3);
    let (n, d) = (2, LONG);
    OpCheck {
        name: "l2_normalize 2x70000",
        inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
        grad: vec![true],
        cpu_forward: &|x| normalize(&x[0], d).0,
        cpu_backward: &|x, dy| vec![normalize_backward(&x[0], dy, d)],
        gpu_forward: &|t| ops::l2_normalize(&t[0]),
        rel: 1e-4,
    }
    .run(&mut rng);
}

#[test]
fn byol_loss_of_long_rows_matches_reference() {
    let mut rng = Rng::new(4);
    let (n, d) = (2, LONG);
    // Random signs: cos is then near 0 and the gradient (ẑ - cos p̂) / |p| is no difference of
    // near-equal terms (positive rows would make it one, far below the f32 rounding of cos).
    OpCheck {
        name: "byol_loss 2x70000",
        inputs: vec![
            (rand_vec(&mut rng, n * d), vec![n, d]),
            (rand_vec(&mut rng, n * d), vec![n, d]),
        ],
        grad: vec![true, false],
        cpu_forward: &|x| vec![byol_forward(&x[0], &x[1], d)],
        cpu_backward: &|x, dy| vec![byol_backward(&x[0], &x[1], d, dy[0]), vec![0.0; n * d]],
        gpu_forward: &|t| ops::byol_loss(&t[0], &t[1]),
        rel: 1e-4,
    }
    .run(&mut rng);
}

#[test]
fn cross_entropy_over_long_rows_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(5);
    let (n, d) = (3, LONG);
    // The largest logit of row 0 sits past column 65535, so a row cut short misses it.
    let mut logits = rand_vec(&mut rng, n * d);
    logits[d - 3] = 4.0;
    let targets = vec![d - 3, 17, d - 1];
    let t = ops::upload_targets(
        &e,
        &targets.iter().map(|&t| t as u32).collect::<Vec<_>>(),
        d,
    )
    .unwrap();
    let rows = |x: &[f64]| -> Vec<Vec<f64>> { x.chunks(d).map(<[f64]>::to_vec).collect() };
    OpCheck {
        name: "cross_entropy 3x70000",
        inputs: vec![(logits, vec![n, d])],
        grad: vec![true],
        cpu_forward: &|x| vec![ce_forward(&rows(&x[0]), &targets)],
        cpu_backward: &|x, dy| vec![ce_backward(&rows(&x[0]), &targets, dy[0]).concat()],
        gpu_forward: &|x| ops::cross_entropy(&x[0], &t),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

// ---- InfoNCE against a long MoCo queue ----------------------------------------------------------

#[test]
fn info_nce_against_a_long_queue_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(6);
    let (n, d, t) = (3, 4, 0.2);
    // 70,001 negatives: past the limit in both the log-sum-exp and (odd K) the gradient's matmul.
    let negs = LONG + 1;
    let (queue, _) = normalize(&common::as_f32_values(&rand_vec(&mut rng, negs * d)), d);
    let queue = common::as_f32_values(&queue);
    let queue_t = upload(&e, &queue, &[negs, d], false);
    let k = common::as_f32_values(&rand_vec(&mut rng, n * d));
    let k_t = upload(&e, &k, &[n, d], false);
    let inputs = vec![(rand_vec(&mut rng, n * d), vec![n, d])];
    OpCheck {
        name: "info_nce queue of 70001",
        inputs,
        grad: vec![true],
        cpu_forward: &|x| vec![info_nce_forward(&x[0], &k, Some(&queue), d, t)],
        cpu_backward: &|x, dy| vec![info_nce_backward(&x[0], &k, Some(&queue), d, t, dy[0])],
        gpu_forward: &|x| ops::info_nce(&x[0], &k_t, t as f32, Some(&queue_t)),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

// ---- conv2d ------------------------------------------------------------------------------------

#[test]
fn conv2d_with_many_channels_sums_every_channel() {
    // 700 channels of a 3x3 kernel: the barrier-free kernels count about 103 loop iterations per
    // channel, 72,100 in all, in the forward (700 input channels) and the input gradient (700
    // output channels).
    // 5x5 planes run the general forward, 8x8 ones forward_3x3_rows (rows of whole 8-pixel blocks).
    let e = common::engine();
    let mut rng = Rng::new(10);
    for h in [5, 8] {
        let (n, k, pad, wide) = (2, 3, 1, 700);
        let x = common::as_f32_values(&positive_vec(&mut rng, n * wide * h * h));
        let w = common::as_f32_values(&positive_vec(&mut rng, 3 * wide * k * k));
        let bias = common::as_f32_values(&positive_vec(&mut rng, 3));
        let y = ops::conv2d(
            &upload(&e, &x, &[n, wide, h, h], false),
            &upload(&e, &w, &[3, wide, k, k], false),
            Some(&upload(&e, &bias, &[3], false)),
            1,
            pad,
        )
        .unwrap();
        let forward = Conv {
            n,
            c: wide,
            h,
            w: h,
            o: 3,
            k,
            stride: 1,
            pad,
        };
        let expected = forward.forward(&x, &w, Some(&bias));
        assert_close("conv2d forward", &y.to_vec().unwrap(), &expected);

        // The input gradient of a 3 -> 700 channel convolution is the forward of 700 -> 3 channels
        // with the weight transposed over channels and flipped in space.
        let wb = common::as_f32_values(&positive_vec(&mut rng, wide * 3 * k * k));
        let dy = common::as_f32_values(&positive_vec(&mut rng, n * wide * h * h));
        let dx = ops::conv2d::conv2d_backward_input(
            &[n, 3, h, h],
            &upload(&e, &wb, &[wide, 3, k, k], false),
            &upload(&e, &dy, &[n, wide, h, h], false),
            1,
            pad,
        )
        .unwrap();
        let backward = Conv {
            c: 3,
            o: wide,
            ..forward
        };
        let (expected, _, _) = backward.backward(&vec![0.0; n * 3 * h * h], &wb, &dy);
        assert_close("conv2d input gradient", &dx.to_vec().unwrap(), &expected);
    }
}

#[test]
fn conv2d_weight_gradient_over_many_pixels_sums_every_pixel() {
    // A binding of 8192 floats holds the 8100 output pixels of one sample but not two copies of
    // the 4225 weights, so the partial-buffer size alone allows one split: one invocation would
    // loop over all 8100 pixels, about 10 counted iterations each in the barrier-free kernel.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(8192 * 4),
        ..Default::default()
    });
    let mut rng = Rng::new(7);
    let (h, k, pad) = (30, 65, 62);
    let oh = h + 2 * pad - k + 1;
    assert_eq!(oh * oh, 8100);
    let x = common::as_f32_values(&positive_vec(&mut rng, h * h));
    let dy = common::as_f32_values(&positive_vec(&mut rng, oh * oh));
    let dw = ops::conv2d::conv2d_backward_weight(
        &upload(&e, &x, &[1, 1, h, h], false),
        &[1, 1, k, k],
        &upload(&e, &dy, &[1, 1, oh, oh], false),
        1,
        pad,
    )
    .unwrap();
    assert_close(
        "conv2d weight gradient",
        &dw.to_vec().unwrap(),
        &Conv {
            n: 1,
            c: 1,
            h,
            w: h,
            o: 1,
            k,
            stride: 1,
            pad,
        }
        .backward(&x, &vec![0.0; k * k], &dy)
        .1,
    );
}

// ---- LARS trust ratio over a parameter of more than 65535 chunks ---------------------------------

#[test]
fn lars_trust_ratio_covers_every_chunk_of_a_huge_parameter() {
    // 65,600 chunks of 1024 elements. The gradient is -p in the first 65,500 chunks and -30 p in
    // the rest, so the trust ratio eta |p| / |g| depends strongly on the last chunks.
    let e = common::engine();
    let (rows, cols) = (65_600, 1024);
    let numel = rows * cols;
    let tail = 65_500 * cols;
    let p: Vec<f32> = (0..numel)
        .map(|i| 0.1 + 0.9 * ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let g: Vec<f32> = p
        .iter()
        .enumerate()
        .map(|(i, v)| if i < tail { -v } else { -30.0 * v })
        .collect();
    let (p_sq, g_sq) = p
        .iter()
        .zip(&g)
        .fold((0.0f64, 0.0f64), |(a, b), (&pv, &gv)| {
            (a + (pv as f64).powi(2), b + (gv as f64).powi(2))
        });
    let (eta, lr) = (1.0, 0.5);
    let trust = eta * p_sq.sqrt() / g_sq.sqrt();
    let set = ParamSet::from_values(&e, &[("w", &[rows, cols], &p)]).unwrap();
    set.set_requires_grad(true);
    let w = set.tensors()[0].clone();
    let out = ops::reshape(&w, &[numel]).unwrap();
    let grads = e
        .backward_from(&out, Tensor::from_slice(&e, &g, &[numel]).unwrap())
        .unwrap();
    drop(g);
    let mut lars = byol::optim::Optimizer::lars(&set, 0.9, 0.0)
        .unwrap()
        .with_eta(eta as f32)
        .unwrap();
    lars.step(&grads, lr as f32).unwrap();
    drop(grads);
    // First step: buf = trust * g, p <- p - lr * buf. Sampled elements, the tail among them.
    let got = w.to_vec().unwrap();
    let picks: Vec<usize> = (0..numel).step_by(4099).chain(tail..tail + 8).collect();
    let expected: Vec<f64> = picks
        .iter()
        .map(|&i| {
            let gv = if i < tail { -p[i] } else { -30.0 * p[i] } as f64;
            p[i] as f64 - lr * trust * gv
        })
        .collect();
    let sampled: Vec<f32> = picks.iter().map(|&i| got[i]).collect();
    assert_close("LARS step", &sampled, &expected);
}

// ---- refusals ---------------------------------------------------------------------------------

#[test]
fn max_pool_window_past_the_limit_is_refused_on_software_adapters() {
    // A 260x260 window loops 260 * 260 + 260 = 67,860 times in one invocation.
    let e = common::engine();
    let mut rng = Rng::new(8);
    let s = 260;
    let mut x = rand_vec(&mut rng, s * s);
    x[s * s - 1] = 5.0; // the maximum sits in the window's last row
    let xt = Tensor::from_slice(&e, &to_f32(&x), &[1, 1, s, s]).unwrap();
    let r = ops::max_pool2d(&xt, s, 1, 0);
    if e.gpu().is_software() {
        match r {
            Err(Error::Invalid(msg)) => assert!(msg.contains("max_pool2d"), "{msg}"),
            other => panic!("expected a refusal on a software adapter, got {other:?}"),
        }
    } else {
        assert_eq!(r.unwrap().to_vec().unwrap(), vec![5.0]);
    }
}

#[test]
fn conv2d_kernel_past_the_limit_is_refused_on_software_adapters() {
    // One channel of an 81x81 kernel alone counts about 4 + 3 * 81 + 10 * 6561 = 65,857 iterations.
    let e = common::engine();
    let k = 81;
    let ones = Tensor::full(&e, 1.0, &[1, 1, k, k]).unwrap();
    let r = ops::conv2d(&ones, &ones, None, 1, 0);
    if e.gpu().is_software() {
        match r {
            Err(Error::Invalid(msg)) => assert!(msg.contains("conv2d"), "{msg}"),
            other => panic!("expected a refusal on a software adapter, got {other:?}"),
        }
    } else {
        assert_eq!(r.unwrap().to_vec().unwrap(), vec![(k * k) as f32]);
    }
}
