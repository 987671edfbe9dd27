//! Sizes no adapter can hold are refused before anything is allocated, naming the flag; every
//! configuration this project ships passes. No GPU needed.

use byol::ssl::Method;
use byol::train::memory::{check, estimate};
use byol::train::TrainConfig;

const GIB: u64 = 1 << 30;

fn err(cfg: &TrainConfig, max_buffer: u64, available: Option<u64>) -> String {
    match check(cfg, max_buffer, available, "test adapter") {
        Ok(()) => panic!("accepted {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn impossible_sizes_name_their_flag() {
    let d = TrainConfig::default();
    let wide = TrainConfig {
        width_mult: 1e6,
        ..d.clone()
    };
    let e = err(&wide, 2 * GIB, None);
    assert!(
        e.contains("--width-mult") && e.contains("test adapter") && e.contains("2.0 GiB"),
        "{e}"
    );
    let heads = TrainConfig {
        proj_hidden: 1_000_000_000,
        ..d.clone()
    };
    assert!(err(&heads, 2 * GIB, None).contains("--proj-hidden"));
    let pred = TrainConfig {
        pred_hidden: 1_000_000_000,
        ..d.clone()
    };
    assert!(err(&pred, 2 * GIB, None).contains("--pred-hidden"));
    let queue = TrainConfig {
        method: Method::Moco,
        queue_size: 1_000_000_000_000,
        ..d.clone()
    };
    assert!(err(&queue, 2 * GIB, None).contains("--queue-size"));
    // A queue the method does not use costs nothing.
    let unused = TrainConfig {
        queue_size: 1_000_000_000_000,
        ..d.clone()
    };
    check(&unused, 2 * GIB, None, "test adapter").unwrap();
    let batch = TrainConfig {
        batch_size: 1 << 24,
        ..d.clone()
    };
    assert!(err(&batch, 2 * GIB, None).contains("--batch-size"));
    // Buffers that fit one by one but not together in a CPU adapter's memory.
    let big = TrainConfig {
        batch_size: 4096,
        ..d.clone()
    };
    let e = err(&big, 64 * GIB, Some(GIB));
    assert!(
        e.contains("--batch-size") && e.contains("1.0 GiB available"),
        "{e}"
    );
}

#[test]
fn the_shipped_configurations_fit() {
    let d = TrainConfig::default();
    let stl = TrainConfig {
        stem: byol::nn::Stem::ImageNet,
        width_mult: 1.0,
        image_size: 96,
        batch_size: 256,
        proj_hidden: 4096,
        proj_out: 256,
        pred_hidden: 4096,
        ..d.clone()
    };
    for cfg in [d.clone(), stl.clone()] {
        check(&cfg, 2 * GIB, Some(16 * GIB), "test adapter").unwrap();
    }
    // ResNet-18 at width 1 has 11.2 million parameters (torchvision's, without fc).
    let e = estimate(&TrainConfig {
        proj_hidden: 1,
        proj_out: 1,
        pred_hidden: 1,
        ..stl
    });
    let floats = e.arena.0 / 4.0;
    assert!((floats - 11_176_512.0).abs() < 1_000.0, "{floats}");
}
