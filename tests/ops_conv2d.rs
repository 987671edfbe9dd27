//! Gradient checks of conv2d (forward, input gradient, weight gradient, bias gradient) on the
//! shapes ResNet-18 uses, with channel counts that are not multiples of the 8x8 blocks, for both
//! kernel variants (barrier-free blocks and workgroup-memory tiles).

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, MatmulVariant};
use common::conv_ref::Conv;
use common::{rand_vec, OpCheck};

fn check(e: &byol::Engine, rng: &mut Rng, cv: Conv, with_bias: bool) {
    let name = format!("conv2d {cv:?} bias={with_bias}");
    let mut inputs = vec![
        (
            rand_vec(rng, cv.n * cv.c * cv.h * cv.w),
            vec![cv.n, cv.c, cv.h, cv.w],
        ),
        (
            rand_vec(rng, cv.o * cv.c * cv.k * cv.k),
            vec![cv.o, cv.c, cv.k, cv.k],
        ),
    ];
    if with_bias {
        inputs.push((rand_vec(rng, cv.o), vec![cv.o]));
    }
    let grad = vec![true; inputs.len()];
    OpCheck {
        name: &name,
        inputs,
        grad,
        cpu_forward: &|x| cv.forward(&x[0], &x[1], x.get(2).map(|v| v.as_slice())),
        cpu_backward: &|x, dy| {
            let (dx, dw, db) = cv.backward(&x[0], &x[1], dy);
            let mut g = vec![dx, dw];
            if x.len() == 3 {
                g.push(db);
            }
            g
        },
        gpu_forward: &|t| ops::conv2d(&t[0], &t[1], t.get(2), cv.stride, cv.pad),
        rel: 1e-4,
    }
    .run_on(e, rng);
}

#[allow(clippy::too_many_arguments)] // the eight numbers that define one convolution
const fn conv(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Conv {
    Conv {
        n,
        c,
        h,
        w,
        o,
        k,
        stride,
        pad,
    }
}

const VARIANTS: [MatmulVariant; 2] = [MatmulVariant::Blocked, MatmulVariant::Tiled];

fn resnet_shapes(variant: MatmulVariant) {
    let e = common::engine_variant(variant);
    let mut rng = Rng::new(51);
    let cases = [
        conv(2, 3, 13, 11, 9, 7, 2, 3), // ImageNet stem: 7x7 stride 2 pad 3
        conv(1, 7, 9, 9, 5, 3, 1, 1),   // 3x3 stride 1, batch 1
        conv(2, 9, 9, 7, 11, 3, 2, 1),  // 3x3 stride 2
        conv(3, 10, 7, 7, 13, 1, 2, 0), // 1x1 stride 2 downsample shortcut
        conv(1, 1, 1, 1, 1, 1, 1, 0),   // the smallest
        conv(2, 3, 5, 5, 4, 3, 1, 0),   // no padding
        conv(1, 66, 3, 3, 67, 3, 1, 1), // more than one 64-wide tile of O and C
    ];
    for (i, cv) in cases.into_iter().enumerate() {
        check(&e, &mut rng, cv, i % 2 == 0);
    }
}

#[test]
fn blocked_kernel_matches_reference_on_resnet_shapes() {
    resnet_shapes(MatmulVariant::Blocked);
}

#[test]
fn tiled_kernel_matches_reference_on_resnet_shapes() {
    resnet_shapes(MatmulVariant::Tiled);
}

#[test]
fn weight_gradient_split_over_many_pixels_matches_reference() {
    // 2*20*20 = 800 output pixels: the weight gradient is split into partial sums and reduced.
    for variant in VARIANTS {
        let mut rng = Rng::new(52);
        check(
            &common::engine_variant(variant),
            &mut rng,
            conv(2, 3, 20, 20, 17, 3, 1, 1),
            true,
        );
    }
}

#[test]
fn batches_larger_than_a_binding_are_split() {
    // A 4 KiB binding limit (1024 floats) forces one launch per sample here.
    for variant in VARIANTS {
        let e = common::engine_with(EngineOptions {
            binding_limit: Some(4096),
            matmul: variant,
            ..Default::default()
        });
        let mut rng = Rng::new(53);
        check(&e, &mut rng, conv(3, 4, 9, 9, 6, 3, 1, 1), true);
    }
}

#[test]
fn impossible_convolutions_are_errors() {
    let e = common::engine();
    let x = byol::Tensor::zeros(&e, &[1, 3, 4, 4]).unwrap();
    let w = byol::Tensor::zeros(&e, &[8, 2, 3, 3]).unwrap();
    assert!(matches!(
        ops::conv2d(&x, &w, None, 1, 1),
        Err(byol::Error::Shape(_))
    ));
    let w = byol::Tensor::zeros(&e, &[8, 3, 7, 7]).unwrap();
    assert!(matches!(
        ops::conv2d(&x, &w, None, 1, 0),
        Err(byol::Error::Shape(_))
    ));
    let w3 = byol::Tensor::zeros(&e, &[8, 3, 3, 3]).unwrap();
    assert!(ops::conv2d(&x, &w3, None, 0, 1).is_err());
    let bad_bias = byol::Tensor::zeros(&e, &[7]).unwrap();
    assert!(ops::conv2d(&x, &w3, Some(&bad_bias), 1, 1).is_err());
}
