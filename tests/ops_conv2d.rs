//! Gradient checks of conv2d (forward, input gradient, weight gradient, bias gradient) on the
//! shapes ResNet-18 uses, with channel counts that are not multiples of the 8x8 blocks, for every
//! kernel: direct (barrier-free blocks, workgroup-memory tiles) and unfolded (im2col, each matmul
//! family, col2im).

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{ConvVariant, EngineOptions, MatmulVariant};
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

/// Every kernel a convolution pass can run: each matmul family, direct and unfolded.
const VARIANTS: [(MatmulVariant, ConvVariant); 5] = [
    (MatmulVariant::Blocked, ConvVariant::Direct),
    (MatmulVariant::Blocked, ConvVariant::DirectUniform),
    (MatmulVariant::Tiled, ConvVariant::Direct),
    (MatmulVariant::Blocked, ConvVariant::Unfold),
    (MatmulVariant::Tiled, ConvVariant::Unfold),
];

fn engine_for((matmul, conv): (MatmulVariant, ConvVariant)) -> byol::Engine {
    common::engine_with(EngineOptions {
        matmul,
        conv,
        ..Default::default()
    })
}

fn resnet_shapes(variant: (MatmulVariant, ConvVariant)) {
    let e = engine_for(variant);
    let mut rng = Rng::new(51);
    let cases = [
        conv(2, 3, 13, 11, 9, 7, 2, 3), // ImageNet stem: 7x7 stride 2 pad 3
        conv(1, 7, 9, 9, 5, 3, 1, 1),   // 3x3 stride 1, batch 1
        conv(2, 9, 9, 7, 11, 3, 2, 1),  // 3x3 stride 2
        conv(3, 10, 7, 7, 13, 1, 2, 0), // 1x1 stride 2 downsample shortcut
        conv(1, 1, 1, 1, 1, 1, 1, 0),   // the smallest
        conv(2, 3, 5, 5, 4, 3, 1, 0),   // no padding
        conv(1, 66, 3, 3, 67, 3, 1, 1), // more than one 64-wide tile of O and C
        conv(2, 8, 8, 8, 16, 3, 2, 1),  // multiples of 4 (the vec4 matmul when unfolded)
        conv(3, 4, 6, 6, 8, 3, 1, 1),   // the same at stride 1
        conv(4, 5, 5, 5, 6, 3, 2, 1),   // 3x3 outputs: vec4 columns that cross samples
        conv(2, 5, 8, 8, 9, 3, 1, 1),   // rows of 8 outputs: the direct forward_3x3_rows
        conv(1, 3, 10, 18, 7, 3, 1, 0), // the same unpadded, 16 wide, 8 high
    ];
    for (i, cv) in cases.into_iter().enumerate() {
        check(&e, &mut rng, cv, i % 2 == 0);
    }
}

#[test]
fn blocked_kernel_matches_reference_on_resnet_shapes() {
    resnet_shapes(VARIANTS[0]);
}

#[test]
fn blocked_kernel_with_uniform_weight_windows_matches_reference_on_resnet_shapes() {
    // These weights' buffers are smaller than a 64 KiB window: each is copied into one.
    resnet_shapes(VARIANTS[1]);
}

#[test]
fn tiled_kernel_matches_reference_on_resnet_shapes() {
    resnet_shapes(VARIANTS[2]);
}

#[test]
fn unfolded_with_blocked_matmul_matches_reference_on_resnet_shapes() {
    resnet_shapes(VARIANTS[3]);
}

#[test]
fn unfolded_with_tiled_matmul_matches_reference_on_resnet_shapes() {
    resnet_shapes(VARIANTS[4]);
}

#[test]
fn uniform_weight_windows_split_over_output_channels_match_reference() {
    // 50 x 40 x 3 x 3 = 18000 floats: more than one window (16320 usable floats, 45 rows of 360)
    // and a buffer large enough to hold windows in place. The forward runs two launches (rows 0-39
    // and 40-49: whole 8-row blocks), the input gradient splits its reduction over output
    // channels 0-44 and 45-49; both forwards (8-wide rows and general) and stride 2.
    let e = engine_for(VARIANTS[1]);
    let mut rng = Rng::new(55);
    check(&e, &mut rng, conv(2, 40, 8, 8, 50, 3, 1, 1), true);
    check(&e, &mut rng, conv(1, 40, 7, 7, 50, 3, 2, 1), false);
}

#[test]
fn weight_gradient_split_over_many_pixels_matches_reference() {
    // 2*20*20 = 800 output pixels: the weight gradient is split into partial sums and reduced.
    for variant in VARIANTS {
        let mut rng = Rng::new(52);
        check(
            &engine_for(variant),
            &mut rng,
            conv(2, 3, 20, 20, 17, 3, 1, 1),
            true,
        );
    }
}

#[test]
fn batches_larger_than_a_binding_are_split() {
    // A 4 KiB binding limit (1024 floats) forces one launch per sample here (and one group of
    // samples per unfolded matrix).
    for (matmul, kernel) in VARIANTS {
        let e = common::engine_with(EngineOptions {
            binding_limit: Some(4096),
            matmul,
            conv: kernel,
            ..Default::default()
        });
        let mut rng = Rng::new(53);
        check(&e, &mut rng, conv(3, 4, 9, 9, 6, 3, 1, 1), true);
        check(&e, &mut rng, conv(3, 4, 8, 8, 6, 3, 1, 1), true);
    }
}

#[test]
fn unfolded_batches_are_split_into_groups_of_samples() {
    // 16 KiB (4096 floats) holds one sample's unfolded matrix (4*9 rows x 81 pixels) but not two:
    // three groups, the weight gradient accumulated over them.
    for matmul in [MatmulVariant::Blocked, MatmulVariant::Tiled] {
        let e = common::engine_with(EngineOptions {
            binding_limit: Some(16384),
            matmul,
            conv: ConvVariant::Unfold,
            ..Default::default()
        });
        let mut rng = Rng::new(54);
        check(&e, &mut rng, conv(3, 4, 9, 9, 6, 3, 1, 1), true);
        check(&e, &mut rng, conv(3, 4, 9, 9, 6, 3, 2, 1), false);
    }
}

#[test]
fn direct_forward_takes_rows_where_output_rows_hold_whole_blocks() {
    // The kernel each shape ran, from the profiler: forward_3x3_rows for 3x3 stride 1 with OW a
    // multiple of 8, the general forward elsewhere (both checked against f64 above).
    let e = common::engine_with(EngineOptions {
        matmul: MatmulVariant::Blocked,
        conv: ConvVariant::Direct,
        profile: true,
        ..Default::default()
    });
    let ran = |x: [usize; 4], k: usize, stride: usize| -> Vec<String> {
        e.profile_report();
        let xt = byol::Tensor::full(&e, 0.5, &x).unwrap();
        let w = byol::Tensor::full(&e, 0.25, &[4, x[1], k, k]).unwrap();
        ops::conv2d(&xt, &w, None, stride, k / 2)
            .unwrap()
            .to_vec()
            .unwrap();
        e.profile_report().into_iter().map(|k| k.0).collect()
    };
    let rows = "conv2d::forward_3x3_rows".to_string();
    let general = "conv2d::forward".to_string();
    let r = ran([2, 3, 8, 16], 3, 1);
    assert!(r.contains(&rows) && !r.contains(&general), "{r:?}");
    for (x, k, stride) in [
        ([2, 3, 9, 9], 3, 1),
        ([2, 3, 16, 16], 3, 2),
        ([2, 3, 8, 8], 1, 1),
    ] {
        let r = ran(x, k, stride);
        assert!(
            r.contains(&general) && !r.contains(&rows),
            "{x:?} k{k} s{stride}: {r:?}"
        );
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
