//! What a run will need, estimated from its config before anything is allocated, so that a size
//! no adapter can hold (`--width-mult 1e6`, `--proj-hidden 1000000000`, `--queue-size 10^12`) is
//! an error naming the flag, not an abort on a failed allocation after gigabytes were taken.
//!
//! The estimate counts in f64 (sizes from flags can overflow any integer) and errs high: every
//! parameter arena four times (weights, gradients, momentum, target), the activations the tape
//! keeps for backward at about seven tensors per residual block, twice over for gradients.

use super::TrainConfig;
use crate::error::{Error, Result};
use crate::nn::Stem;
use crate::ssl::Method;

/// Sizes in bytes of what a run of one config allocates.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The largest parameter arena (one buffer: encoder + projector), and the flag that sizes it.
    pub arena: (f64, &'static str),
    /// The largest activation tensor (one buffer), and the flags that size it.
    pub activation: (f64, &'static str),
    /// MoCo's queue of negatives (one buffer), if the method has one.
    pub queue: f64,
    /// Everything together, roughly.
    pub total: f64,
}

const F32: f64 = 4.0;

/// Floats in ResNet-18's parameters at width `w` (as `nn::resnet` builds it), and in its
/// largest per-image activation and all its per-image activations for a side-`s` input.
fn resnet(w: f64, stem: Stem, s: f64) -> (f64, f64, f64) {
    let width = |c: f64| (c * w).round().max(1.0);
    let c0 = width(64.0);
    let (k, mut side) = match stem {
        Stem::ImageNet => (7.0, (s / 2.0).ceil()),
        Stem::Cifar => (3.0, s),
    };
    let mut params = 3.0 * c0 * k * k + 2.0 * c0;
    let stem_out = c0 * side * side;
    let mut acts = 3.0 * stem_out;
    if stem == Stem::ImageNet {
        side = (side / 2.0).ceil();
    }
    let mut c_in = c0;
    for (stage, base) in [64.0, 128.0, 256.0, 512.0].into_iter().enumerate() {
        let c = width(base);
        if stage > 0 {
            side = (side / 2.0).ceil();
        }
        for block in 0..2 {
            let cin = if block == 0 { c_in } else { c };
            params += 9.0 * cin * c + 9.0 * c * c + 4.0 * c;
            if cin != c || (block == 0 && stage > 0) {
                params += cin * c + 2.0 * c;
            }
            acts += 7.0 * c * side * side;
        }
        c_in = c;
    }
    (params, stem_out, acts)
}

/// Floats in an MLP head `d_in -> hidden -> d_out` (with its norm's scale and shift).
fn mlp(d_in: f64, hidden: f64, d_out: f64) -> f64 {
    d_in * hidden + 3.0 * hidden + hidden * d_out + d_out
}

pub fn estimate(cfg: &TrainConfig) -> Estimate {
    let s = cfg.image_size as f64;
    let (encoder, stem_out, acts) = resnet(cfg.width_mult, cfg.stem, s);
    let d = (512.0 * cfg.width_mult).round().max(1.0);
    let (h, o, ph) = (
        cfg.proj_hidden as f64,
        cfg.proj_out as f64,
        cfg.pred_hidden as f64,
    );
    let projector = mlp(d, h, o);
    let predictor = mlp(o, ph, o);
    let arena_floats = encoder + projector;
    let arena_flag = if encoder >= projector {
        "--width-mult"
    } else {
        "--proj-hidden"
    };
    let (arena, arena_flag) = if predictor > arena_floats {
        (predictor * F32, "--pred-hidden")
    } else {
        (arena_floats * F32, arena_flag)
    };
    // Both views go through the network in one batch of 2N.
    let views = 2.0 * cfg.batch_size as f64;
    let uses_queue =
        cfg.method == Method::Moco || (cfg.method == Method::Contrastive && cfg.contrastive_queue);
    let queue = if uses_queue {
        cfg.queue_size as f64 * o * F32
    } else {
        0.0
    };
    let head_acts = views * (h + ph + 4.0 * o) * F32;
    let total = 4.0 * (arena_floats + predictor) * F32
        + 2.0 * (views * acts * F32 + head_acts)
        + 2.0 * queue;
    Estimate {
        arena: (arena, arena_flag),
        activation: (
            views * stem_out * F32,
            "--batch-size, --image-size and --width-mult",
        ),
        queue,
        total,
    }
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// Refuses a config whose estimated buffers exceed `max_buffer` (the adapter's largest buffer)
/// or whose total exceeds `available` memory (known for CPU adapters, whose memory is the
/// system's), naming the flag that makes it so.
pub fn check(
    cfg: &TrainConfig,
    max_buffer: u64,
    available: Option<u64>,
    adapter: &str,
) -> Result<()> {
    let e = estimate(cfg);
    let limit = max_buffer as f64;
    let too_big = |what: &str, bytes: f64, flag: &str| {
        Err(Error::Invalid(format!(
            "{flag}: {what} would take {} in one buffer, more than the {} the adapter ({adapter}) \
             allows for one buffer; choose a smaller value",
            gib(bytes),
            gib(limit)
        )))
    };
    if e.arena.0 > limit {
        return too_big("the parameters of one network", e.arena.0, e.arena.1);
    }
    if e.activation.0 > limit {
        return too_big(
            "the first layer's activations",
            e.activation.0,
            e.activation.1,
        );
    }
    if e.queue > limit {
        return too_big("the queue of negatives", e.queue, "--queue-size");
    }
    if let Some(avail) = available {
        if e.total > avail as f64 {
            let flag = [
                (4.0 * e.arena.0, e.arena.1),
                (
                    e.total - 4.0 * e.arena.0 - 2.0 * e.queue,
                    "--batch-size (or --image-size)",
                ),
                (2.0 * e.queue, "--queue-size"),
            ]
            .into_iter()
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a })
            .1;
            return Err(Error::Invalid(format!(
                "this run would need about {} of memory, more than the {} available to the \
                 adapter ({adapter}, which uses system memory); mostly because of {flag}: choose a \
                 smaller value",
                gib(e.total),
                gib(avail as f64)
            )));
        }
    }
    Ok(())
}

/// Memory the system can give now (Linux: MemAvailable), for CPU adapters.
pub fn system_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
