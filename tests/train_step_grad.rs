//! A whole training step's parameter gradients against an f64 CPU reference of the same tiny
//! network. The GPU runs the training step's forward and backward (`Trainer::forward` and
//! `Trainer::backward`, the calls `byol train` makes) on two random views, from a `TrainConfig`; the
//! test reads every parameter back, re-computes the step's loss in f64 (online encoder, projector
//! and predictor, the target network with its own batch statistics, the symmetrized loss) and
//! takes central finite differences of it at sampled coordinates of EVERY trainable tensor.
//!
//! Why finite differences are the ground truth here: in f64, a central difference with h = 1e-7
//! has truncation error ~h²·|L'''| ≈ 1e-14 and rounding error ~1e-16·|L|·(roundings) / h ≈ 1e-8,
//! against gradients of order 0.1 to 50: many orders below the f32 error allowed for the GPU
//! (h = 1e-6, 1e-7 and 1e-8 give the same worst errors), so no hand-written reference backward
//! can be wrong in a way the test would miss.

mod common;
mod norm_ref;

use byol::nn::{EncoderNorm, NormKind, Stem};
use byol::rng::Rng;
use byol::ssl::{Method, ModelConfig};
use byol::train::{TrainConfig, Trainer};
use byol::{ParamSet, Tensor};
use common::conv_ref::Conv;
use common::loss_ref::{byol_forward, info_nce_forward};
use common::pool_ref::cpu_max_pool;
use common::{as_f32_values, rand_vec, to_f32};
use norm_ref::NormRef;
use std::collections::HashMap;
use std::time::Instant;

/// Finite-difference step (see the module comment). Small, because relu and max pool have kinks:
/// a step crosses one when an activation lies within ~h of it, with an error that grows with h
/// (at h = 1e-5 the checks along whole-gradient directions already cross some and fail).
const H: f64 = 1e-7;

/// Allowed error of a GPU gradient coordinate, relative to the largest true gradient of its tensor.
/// The GPU computes in f32 through ~20 layers, most of them batch/group norms whose backward
/// subtracts two means of products (dx = rstd·(g − mean g − x̂·mean(g·x̂))): each loses a few bits
/// to cancellation, and with tiny batches (4 samples of a 1×1 map in layer 4) the cancellation is
/// strong. Observed worst errors on llvmpipe are 5e-5 (BYOL, batch norm) and 2e-5 (group norm) of
/// the tensor's scale; 1e-3 leaves room for other adapters' summation orders while one tensor's
/// gradient scaled by 1.002 still fails.
const TOL: f64 = 1e-3;
/// Relative error allowed in the loss value itself (f32 forward through the same layers).
const LOSS_TOL: f64 = 1e-4;

/// Activations [n, c, h, w]; features are [n, c, 1, 1].
#[derive(Clone)]
struct Act {
    v: Vec<f64>,
    shape: [usize; 4],
}

/// Parameter values by name (the online arena and the predictor's: their names differ).
type Values = HashMap<String, Vec<f64>>;

fn relu(mut a: Act) -> Act {
    a.v.iter_mut().for_each(|v| *v = v.max(0.0));
    a
}

fn add(mut a: Act, b: &Act) -> Act {
    assert_eq!(a.shape, b.shape);
    a.v.iter_mut().zip(&b.v).for_each(|(x, y)| *x += y);
    a
}

/// k×k max pooling with stride and padding; padding never wins.
fn max_pool(x: &Act, k: usize, stride: usize, pad: usize) -> Act {
    let [n, c, h, w] = x.shape;
    let (v, _) = cpu_max_pool(&x.v, x.shape, k, stride, pad);
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    Act {
        v,
        shape: [n, c, oh, ow],
    }
}

fn global_avg_pool(x: &Act) -> Act {
    let [n, c, h, w] = x.shape;
    let v =
        x.v.chunks(h * w)
            .map(|p| p.iter().sum::<f64>() / (h * w) as f64)
            .collect();
    Act {
        v,
        shape: [n, c, 1, 1],
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Group count of the encoder's group norm: the largest divisor of `channels` not above 32.
fn groups_for(channels: usize) -> usize {
    (1..=32.min(channels))
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap()
}

/// Encoder stages: 0 is the stem, 1..=8 the residual blocks; stage 9 (the heads) starts from the
/// last block's output.
const HEAD_STAGE: usize = 9;

/// The stage a parameter belongs to (where a finite difference must restart the forward).
fn stage_of(name: &str) -> usize {
    if name.starts_with("stem.") {
        return 0;
    }
    match name.strip_prefix("layer") {
        Some(rest) => {
            let b = rest.as_bytes();
            let (stage, block) = ((b[0] - b'1') as usize, (b[2] - b'0') as usize);
            1 + 2 * stage + block
        }
        None => HEAD_STAGE,
    }
}

/// The f64 reference of the model: the same structure as `byol::nn` (names, strides, norms).
struct RefModel {
    cfg: ModelConfig,
    shapes: HashMap<String, Vec<usize>>,
}

impl RefModel {
    fn conv(&self, p: &Values, name: &str, x: &Act, stride: usize) -> Act {
        let key = format!("{name}.weight");
        let shape = &self.shapes[&key];
        let standardized;
        let mut w = &p[&key];
        if self.cfg.encoder.norm == EncoderNorm::GroupWs {
            standardized = NormRef::weight_std(shape).forward(w, None, None);
            w = &standardized;
        }
        let [n, c, h, wd] = x.shape;
        let (o, k) = (shape[0], shape[2]);
        let conv = Conv {
            n,
            c,
            h,
            w: wd,
            o,
            k,
            stride,
            pad: k / 2,
        };
        let (oh, ow) = conv.out();
        Act {
            v: conv.forward(&x.v, w, None),
            shape: [n, o, oh, ow],
        }
    }

    fn norm(&self, p: &Values, name: &str, kind: NormKind, x: &Act) -> Act {
        let [n, c, h, w] = x.shape;
        let reference = match kind {
            NormKind::None => return x.clone(),
            NormKind::Batch => NormRef::batch_norm(&[n, c, h * w]),
            NormKind::Group(g) => NormRef::group_norm(&[n, c, h * w], g.min(c)),
            NormKind::Layer => {
                assert_eq!(h * w, 1, "layer norm is only used on features");
                NormRef::layer_norm(&[n, c])
            }
        };
        let gamma = &p[&format!("{name}.weight")];
        let beta = &p[&format!("{name}.bias")];
        Act {
            v: reference.forward(&x.v, Some(gamma), Some(beta)),
            shape: x.shape,
        }
    }

    fn encoder_norm(&self, channels: usize) -> NormKind {
        match self.cfg.encoder.norm {
            EncoderNorm::Batch => NormKind::Batch,
            EncoderNorm::GroupWs => NormKind::Group(groups_for(channels)),
            EncoderNorm::None => NormKind::None,
        }
    }

    /// y = x·Wᵀ + b with W stored [out, in].
    fn linear(&self, p: &Values, name: &str, x: &Act) -> Act {
        let (w, b) = (&p[&format!("{name}.weight")], &p[&format!("{name}.bias")]);
        let d_in = x.shape[1];
        let d_out = b.len();
        let mut v = Vec::with_capacity(x.shape[0] * d_out);
        for row in x.v.chunks(d_in) {
            for o in 0..d_out {
                v.push(b[o] + dot(row, &w[o * d_in..(o + 1) * d_in]));
            }
        }
        Act {
            v,
            shape: [x.shape[0], d_out, 1, 1],
        }
    }

    fn stem(&self, p: &Values, x: &Act) -> Act {
        let imagenet = self.cfg.encoder.stem == Stem::ImageNet;
        let y = self.conv(p, "stem.conv", x, if imagenet { 2 } else { 1 });
        let kind = self.encoder_norm(y.shape[1]);
        let y = relu(self.norm(p, "stem.norm", kind, &y));
        if imagenet {
            max_pool(&y, 3, 2, 1)
        } else {
            y
        }
    }

    /// Residual block `i` (0..8): layer{i/2 + 1}.{i%2}.
    fn block(&self, p: &Values, i: usize, x: &Act) -> Act {
        let (stage, j) = (i / 2, i % 2);
        let name = format!("layer{}.{j}", stage + 1);
        let stride = if stage > 0 && j == 0 { 2 } else { 1 };
        let y = self.conv(p, &format!("{name}.conv1"), x, stride);
        let kind = self.encoder_norm(y.shape[1]);
        let y = relu(self.norm(p, &format!("{name}.norm1"), kind, &y));
        let y = self.conv(p, &format!("{name}.conv2"), &y, 1);
        let y = self.norm(p, &format!("{name}.norm2"), kind, &y);
        let skip = if self
            .shapes
            .contains_key(&format!("{name}.shortcut.conv.weight"))
        {
            let s = self.conv(p, &format!("{name}.shortcut.conv"), x, stride);
            self.norm(p, &format!("{name}.shortcut.norm"), kind, &s)
        } else {
            x.clone()
        };
        relu(add(y, &skip))
    }

    fn stage(&self, p: &Values, s: usize, x: &Act) -> Act {
        if s == 0 {
            self.stem(p, x)
        } else {
            self.block(p, s - 1, x)
        }
    }

    /// The input of every stage 0..=HEAD_STAGE for one view.
    fn trace(&self, p: &Values, image: &Act) -> Vec<Act> {
        let mut acts = vec![image.clone()];
        for s in 0..HEAD_STAGE {
            let next = self.stage(p, s, &acts[s]);
            acts.push(next);
        }
        acts
    }

    /// Stages `from..` from their input: the last block's output.
    fn encode_from(&self, p: &Values, from: usize, x: &Act) -> Act {
        let mut h = x.clone();
        for s in from..HEAD_STAGE {
            h = self.stage(p, s, &h);
        }
        h
    }

    fn mlp(&self, p: &Values, name: &str, kind: NormKind, x: &Act) -> Act {
        let h = self.linear(p, &format!("{name}.fc1"), x);
        let h = relu(self.norm(p, &format!("{name}.norm"), kind, &h));
        self.linear(p, &format!("{name}.fc2"), &h)
    }

    /// Projector output from the last block's output (global average pool first).
    fn project(&self, p: &Values, last: &Act) -> Act {
        self.mlp(p, "projector", self.cfg.proj_norm, &global_avg_pool(last))
    }

    fn predict(&self, p: &Values, z: &Act) -> Act {
        if self.cfg.method.has_predictor() {
            self.mlp(p, "predictor", self.cfg.pred_norm, z)
        } else {
            z.clone()
        }
    }

    /// The symmetrized loss of predictions `preds` against target projections `targets`.
    fn loss(&self, preds: &[Act; 2], targets: &[Act; 2]) -> f64 {
        let pair = |p: &Act, k: &Act| match self.cfg.method {
            Method::Byol => byol_forward(&p.v, &k.v, p.shape[1]),
            Method::Contrastive => {
                info_nce_forward(&p.v, &k.v, None, p.shape[1], self.cfg.temperature as f64)
            }
            m => panic!("the reference covers byol and contrastive, not {m:?}"),
        };
        pair(&preds[0], &targets[1]) + pair(&preds[1], &targets[0])
    }
}

/// What the GPU step produced, read back: values and gradients by name.
struct GpuStep {
    loss: f64,
    online: Values,
    target: Values,
    grads: Values,
    shapes: HashMap<String, Vec<usize>>,
    /// Trainable parameter names in arena order (online, then predictor).
    names: Vec<String>,
}

fn read(t: &Tensor) -> Vec<f64> {
    t.to_vec().unwrap().iter().map(|&v| v as f64).collect()
}

fn gpu_step(cfg: &TrainConfig, views: &[Act; 2]) -> GpuStep {
    let e = common::engine();
    let mut trainer = Trainer::new(&e, cfg, 1).unwrap();
    let upload = |a: &Act| Tensor::from_slice(&e, &to_f32(&a.v), &a.shape).unwrap();
    let (v1, v2) = (upload(&views[0]), upload(&views[1]));
    let out = trainer.forward(&v1, &v2).unwrap();
    let grads = trainer.backward(&out).unwrap();
    let model = trainer.model();
    let mut step = GpuStep {
        loss: out.loss.item().unwrap() as f64,
        online: Values::new(),
        target: Values::new(),
        grads: Values::new(),
        shapes: HashMap::new(),
        names: Vec::new(),
    };
    let sets: Vec<&ParamSet> = model.trainable();
    for (name, t) in sets.iter().flat_map(|s| s.iter()) {
        let g = grads
            .get(t)
            .unwrap_or_else(|| panic!("no gradient for trainable parameter {name}"));
        assert_eq!(g.shape(), t.shape(), "{name}: gradient shape");
        assert!(
            step.online.insert(name.into(), read(t)).is_none(),
            "{name} twice"
        );
        step.grads.insert(name.into(), read(g));
        step.shapes.insert(name.into(), t.shape().to_vec());
        step.names.push(name.into());
    }
    let target = model.target_params().expect("the method has a target");
    for (name, t) in target.iter() {
        assert!(
            grads.get(t).is_none(),
            "{name}: the target network must get no gradient"
        );
        step.target.insert(name.into(), read(t));
    }
    step
}

/// Random views [n, 3, size, size], rounded through f32 so both sides see the same values.
fn random_views(rng: &mut Rng, n: usize, size: usize) -> [Act; 2] {
    let shape = [n, 3, size, size];
    let mut view = || Act {
        v: as_f32_values(&rand_vec(rng, n * 3 * size * size)),
        shape,
    };
    [view(), view()]
}

/// The f64 loss as a function of the online parameters, with the target's projections fixed (the
/// target is a separate copy: perturbing an online parameter must not move it) and each view's
/// stage inputs cached, so a perturbation in stage s re-runs the forward from stage s only.
struct LossFn {
    model: RefModel,
    params: Values,
    cache: [Vec<Act>; 2],
    targets: [Act; 2],
}

impl LossFn {
    fn new(model: RefModel, step: &GpuStep, views: &[Act; 2]) -> LossFn {
        let t = &step.target;
        let targets = views
            .clone()
            .map(|v| model.project(t, &model.encode_from(t, 0, &v)));
        let cache = views.clone().map(|v| model.trace(&step.online, &v));
        LossFn {
            model,
            params: step.online.clone(),
            cache,
            targets,
        }
    }

    fn eval_from(&self, stage: usize) -> f64 {
        let (m, p) = (&self.model, &self.params);
        let preds = [0, 1].map(|v| {
            let last = m.encode_from(p, stage, &self.cache[v][stage]);
            m.predict(p, &m.project(p, &last))
        });
        m.loss(&preds, &self.targets)
    }

    /// Central difference of the loss along `dir` (coordinate -> step) of parameter `name`.
    fn directional(&mut self, name: &str, dir: &[(usize, f64)]) -> f64 {
        let stage = stage_of(name);
        let saved = self.params[name].clone();
        let at = |sign: f64, this: &mut LossFn| {
            let p = this.params.get_mut(name).unwrap();
            for &(i, d) in dir {
                p[i] = saved[i] + sign * H * d;
            }
            this.eval_from(stage)
        };
        let plus = at(1.0, self);
        let minus = at(-1.0, self);
        self.params.insert(name.to_string(), saved);
        (plus - minus) / (2.0 * H)
    }
}

/// One comparison: a GPU value and its finite-difference truth.
struct Check {
    what: String,
    gpu: f64,
    truth: f64,
    scale: f64,
}

/// Compares the GPU gradients with finite differences: per tensor, the coordinate of its largest
/// GPU gradient (so the tensor's scale comes from the truth at its biggest entry) and two random
/// ones (all coordinates of tensors with at most 4), and the derivative along the GPU gradient's
/// own direction (a check of every coordinate at once: it is |g| exactly when the gradient is
/// right).
fn check_step(train_cfg: TrainConfig, views: [Act; 2], seed: u64) {
    let start = Instant::now();
    let step = gpu_step(&train_cfg, &views);
    let cfg: ModelConfig = train_cfg.model_config().unwrap();
    let gpu_time = start.elapsed();
    for (name, v) in &step.target {
        assert_eq!(v, &step.online[name], "{name}: the target starts as a copy");
    }
    let model = RefModel {
        cfg,
        shapes: step.shapes.clone(),
    };
    let mut f = LossFn::new(model, &step, &views);
    let loss_ref = f.eval_from(0);
    let loss_err = (step.loss - loss_ref).abs() / loss_ref.abs();
    assert!(
        loss_err <= LOSS_TOL,
        "loss: gpu {} vs reference {loss_ref} (relative error {loss_err:.2e})",
        step.loss
    );

    let mut rng = Rng::new(seed);
    let mut checks = Vec::new();
    let mut largest_scale = 0.0f64;
    for name in &step.names {
        let g = &step.grads[name];
        let n = g.len();
        let argmax = (0..n)
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let mut points = vec![argmax];
        if n <= 4 {
            points = (0..n).collect();
        }
        while points.len() < 3.min(n) {
            let i = rng.below(n);
            if !points.contains(&i) {
                points.push(i);
            }
        }
        let truths: Vec<f64> = points
            .iter()
            .map(|&i| f.directional(name, &[(i, 1.0)]))
            .collect();
        let scale = truths.iter().fold(0.0f64, |m, t| m.max(t.abs()));
        largest_scale = largest_scale.max(scale);
        for (&i, &truth) in points.iter().zip(&truths) {
            checks.push(Check {
                what: format!("{name}[{i}]"),
                gpu: g[i],
                truth,
                scale,
            });
        }
        let norm = dot(g, g).sqrt();
        if norm > 0.0 {
            let dir: Vec<(usize, f64)> = g.iter().map(|v| v / norm).enumerate().collect();
            checks.push(Check {
                what: format!("{name} along its gradient"),
                gpu: norm,
                truth: f.directional(name, &dir),
                scale: norm,
            });
        }
    }

    // Tensors whose true gradient is zero (a linear bias right before batch norm, the projector's
    // output bias when the predictor starts with batch norm) hold f32 cancellation residue (~1e-8
    // of the largest gradient): they are held to a floor of 1e-3 of the largest coordinate scale.
    let floor = 1e-3 * largest_scale;
    let mut worst = (0.0f64, String::new());
    let mut failures = Vec::new();
    for c in &checks {
        let ratio = (c.gpu - c.truth).abs() / (c.scale + floor);
        if ratio > worst.0 {
            worst = (ratio, c.what.clone());
        }
        if ratio > TOL {
            failures.push(format!(
                "{}: gpu {:.6e} vs finite differences {:.6e} (error {:.2e} of scale {:.2e})",
                c.what, c.gpu, c.truth, ratio, c.scale
            ));
        }
    }
    eprintln!(
        "{} tensors, {} checks; loss {loss_ref:.6} (relative error {loss_err:.1e}); worst error \
         {:.1e} of scale at {}; gpu step {:.1?}, total {:.1?}",
        step.names.len(),
        checks.len(),
        worst.0,
        worst.1,
        gpu_time,
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} gradient checks failed (tolerance {TOL:.0e}):\n{}",
        failures.len(),
        checks.len(),
        failures.join("\n")
    );
}

/// BYOL at width 1/8 (8-16-32-64 channels), CIFAR stem, 8×8 views (layer 4 is 1×1), batch norm
/// everywhere (encoder, projector, predictor), batch 4.
#[test]
fn byol_step_gradients_match_f64_finite_differences() {
    let cfg = TrainConfig {
        method: Method::Byol,
        stem: Stem::Cifar,
        width_mult: 0.125,
        encoder_norm: EncoderNorm::Batch,
        proj_hidden: 16,
        proj_out: 8,
        pred_hidden: 16,
        proj_norm: NormKind::Batch,
        pred_norm: NormKind::Batch,
        batch_size: 4,
        image_size: 8,
        seed: 5,
        ..TrainConfig::default()
    };
    let views = random_views(&mut Rng::new(91), 4, 8);
    check_step(cfg, views, 92);
}

/// The contrastive variant (InfoNCE at temperature 0.3 between predictions and target
/// projections), ImageNet stem (7×7/2 conv, 3×3/2 max pool), group norm with weight-standardized
/// convs, a layer-normed projector and a norm-free predictor, batch 3. 40×40 views give maps of
/// 20, 10, 10, 5, 3, 2: odd sizes, and no group of one element (which would be constant).
#[test]
fn contrastive_group_norm_step_gradients_match_f64_finite_differences() {
    let cfg = TrainConfig {
        method: Method::Contrastive,
        stem: Stem::ImageNet,
        width_mult: 0.125,
        encoder_norm: EncoderNorm::GroupWs,
        proj_hidden: 16,
        proj_out: 8,
        pred_hidden: 12,
        proj_norm: NormKind::Layer,
        pred_norm: NormKind::None,
        temperature: 0.3,
        batch_size: 3,
        image_size: 40,
        seed: 6,
        ..TrainConfig::default()
    };
    let views = random_views(&mut Rng::new(93), 3, 40);
    check_step(cfg, views, 94);
}
