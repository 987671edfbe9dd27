//! The encoder, heads and (where the method has one) the EMA target, and the loss of one step.

use super::Method;
use crate::engine::Engine;
use crate::error::Result;
use crate::nn::{Mlp, NormKind, ParamBuilder, ResNet, ResNetConfig};
use crate::ops;
use crate::params::ParamSet;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub method: Method,
    pub encoder: ResNetConfig,
    pub proj_hidden: usize,
    pub proj_out: usize,
    pub pred_hidden: usize,
    pub proj_norm: NormKind,
    pub pred_norm: NormKind,
    pub temperature: f32,
    pub queue_size: usize,
    /// `Contrastive` draws its negatives from a queue of past targets instead of the batch.
    pub contrastive_queue: bool,
    pub seed: u64,
}

/// One network: encoder + projection head, with their parameters in one arena.
struct Branch {
    encoder: ResNet,
    projector: Mlp,
    params: ParamSet,
}

impl Branch {
    fn new(engine: &Engine, cfg: &ModelConfig, seed: u64) -> Result<Branch> {
        let mut b = ParamBuilder::new(seed);
        let encoder = ResNet::new(&mut b, engine, cfg.encoder)?;
        let dims = [encoder.out_dim(), cfg.proj_hidden, cfg.proj_out];
        let projector = Mlp::new(&mut b, engine, "projector", dims, cfg.proj_norm)?;
        let params = b.build(engine)?;
        Ok(Branch {
            encoder,
            projector,
            params,
        })
    }

    fn project(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let y = self.encoder.forward(&self.params, x, training)?;
        self.projector.forward(&self.params, &y, training)
    }
}

/// What one step computed: the loss, and the normalized online projection of view 1 and
/// normalized target of view 2 that the collapse diagnostics compare.
pub struct StepOutput {
    pub loss: Tensor,
    pub online_z: Tensor,
    pub target_z: Tensor,
}

pub struct SslModel {
    pub config: ModelConfig,
    online: Branch,
    predictor: Option<(Mlp, ParamSet)>,
    target: Option<Branch>,
    queue: Option<Tensor>,
    queue_pos: usize,
}

impl SslModel {
    pub fn new(engine: &Engine, config: ModelConfig) -> Result<SslModel> {
        let online = Branch::new(engine, &config, config.seed)?;
        let predictor = if config.method.has_predictor() {
            let mut b = ParamBuilder::new(config.seed ^ 0x5052_4544);
            let dims = [config.proj_out, config.pred_hidden, config.proj_out];
            let mlp = Mlp::new(&mut b, engine, "predictor", dims, config.pred_norm)?;
            Some((mlp, b.build(engine)?))
        } else {
            None
        };
        // The target has the same structure (its own batch-norm statistics) and starts as a copy.
        let target = if config.method.has_target() {
            let t = Branch::new(engine, &config, config.seed)?;
            t.params.copy_from(&online.params)?;
            t.params.set_requires_grad(false);
            Some(t)
        } else {
            None
        };
        let uses_queue = config.method == Method::Moco
            || (config.method == Method::Contrastive && config.contrastive_queue);
        let queue = if uses_queue {
            Some(random_unit_rows(
                engine,
                config.queue_size,
                config.proj_out,
                config.seed,
            )?)
        } else {
            None
        };
        Ok(SslModel {
            config,
            online,
            predictor,
            target,
            queue,
            queue_pos: 0,
        })
    }

    /// The parameter arenas an optimizer updates: encoder + projector, then the predictor.
    pub fn trainable(&self) -> Vec<&ParamSet> {
        let mut v = vec![&self.online.params];
        if let Some((_, p)) = &self.predictor {
            v.push(p);
        }
        v
    }

    pub fn target_params(&self) -> Option<&ParamSet> {
        self.target.as_ref().map(|t| &t.params)
    }

    pub fn queue(&self) -> Option<(&Tensor, usize)> {
        self.queue.as_ref().map(|q| (q, self.queue_pos))
    }

    pub fn set_queue_pos(&mut self, pos: usize) {
        self.queue_pos = pos;
    }

    pub fn encoder(&self) -> &ResNet {
        &self.online.encoder
    }

    /// The online network (or, with `target`, the EMA target, if the method has one): encoder,
    /// projector and the arena holding both's parameters.
    pub fn network(&self, target: bool) -> Option<(&ResNet, &Mlp, &ParamSet)> {
        let b = if target {
            self.target.as_ref()?
        } else {
            &self.online
        };
        Some((&b.encoder, &b.projector, &b.params))
    }

    /// The prediction MLP and its arena, for methods that have one.
    pub fn predictor(&self) -> Option<(&Mlp, &ParamSet)> {
        self.predictor.as_ref().map(|(m, p)| (m, p))
    }

    pub fn embedding_dim(&self) -> usize {
        self.online.encoder.out_dim()
    }

    /// Every batch-norm running statistic of every network, in a fixed order (for checkpoints).
    pub fn norm_states(&self) -> Vec<&ops::BatchNormState> {
        fn branch_states(b: &Branch) -> impl Iterator<Item = &ops::BatchNormState> {
            let encoder = b.encoder.norms().into_iter().filter_map(|n| n.state());
            encoder.chain(b.projector.norm().state())
        }
        let mut v: Vec<&ops::BatchNormState> = branch_states(&self.online).collect();
        if let Some(t) = &self.target {
            v.extend(branch_states(t));
        }
        if let Some((m, _)) = &self.predictor {
            v.extend(m.norm().state());
        }
        v
    }

    /// Encoder embeddings in eval mode (running statistics), without recording.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let _ng = x.engine().no_grad();
        self.online.encoder.forward(&self.online.params, x, false)
    }

    fn predict(&self, z: &Tensor) -> Result<Tensor> {
        match &self.predictor {
            Some((mlp, p)) => mlp.forward(p, z, true),
            None => Ok(z.clone()),
        }
    }

    /// The loss of one step on two views (recorded on the tape), and the diagnostics' inputs.
    pub fn step_loss(&mut self, v1: &Tensor, v2: &Tensor) -> Result<StepOutput> {
        let engine = v1.engine().clone();
        let t = self.config.temperature;
        match self.config.method {
            Method::Byol | Method::Contrastive => {
                let z1 = self.online.project(v1, true)?;
                let z2 = self.online.project(v2, true)?;
                let (p1, p2) = (self.predict(&z1)?, self.predict(&z2)?);
                let (k1, k2) = {
                    let _ng = engine.no_grad();
                    let target = self.target.as_ref().expect("byol has a target");
                    (target.project(v1, true)?, target.project(v2, true)?)
                };
                let loss = if self.config.method == Method::Byol {
                    ops::add(&ops::byol_loss(&p1, &k2)?, &ops::byol_loss(&p2, &k1)?)?
                } else if let Some(queue) = &self.queue {
                    // The seed's contrastive row: negatives from past targets, then this step's
                    // targets join the queue (the loss has already taken what it needs of it).
                    let loss = ops::add(
                        &ops::info_nce(&p1, &k2, t, Some(queue))?,
                        &ops::info_nce(&p2, &k1, t, Some(queue))?,
                    )?;
                    let _ng = engine.no_grad();
                    let pos = ops::queue_push(queue, &ops::l2_normalize(&k2)?, self.queue_pos)?;
                    self.queue_pos = ops::queue_push(queue, &ops::l2_normalize(&k1)?, pos)?;
                    loss
                } else {
                    ops::add(
                        &ops::info_nce(&p1, &k2, t, None)?,
                        &ops::info_nce(&p2, &k1, t, None)?,
                    )?
                };
                self.diag_output(loss, &z1, &k2)
            }
            Method::SimSiam => {
                let z1 = self.online.project(v1, true)?;
                let z2 = self.online.project(v2, true)?;
                let (p1, p2) = (self.predict(&z1)?, self.predict(&z2)?);
                // byol_loss never sends a gradient into its second argument: the stop-gradient.
                let loss = ops::add(&ops::byol_loss(&p1, &z2)?, &ops::byol_loss(&p2, &z1)?)?;
                self.diag_output(loss, &z1, &z2)
            }
            Method::Moco => {
                let q = self.online.project(v1, true)?;
                let k = {
                    let _ng = engine.no_grad();
                    let target = self.target.as_ref().expect("moco has a target");
                    ops::l2_normalize(&target.project(v2, true)?)?
                };
                let queue = self.queue.as_ref().expect("moco has a queue");
                let loss = ops::info_nce(&q, &k, t, Some(queue))?;
                self.queue_pos = ops::queue_push(queue, &k, self.queue_pos)?;
                self.diag_output(loss, &q, &k)
            }
            Method::SimClr => {
                let z1 = self.online.project(v1, true)?;
                let z2 = self.online.project(v2, true)?;
                let loss = ops::nt_xent(&z1, &z2, t)?;
                self.diag_output(loss, &z1, &z2)
            }
        }
    }

    fn diag_output(&self, loss: Tensor, z: &Tensor, k: &Tensor) -> Result<StepOutput> {
        let _ng = z.engine().no_grad();
        Ok(StepOutput {
            loss,
            online_z: ops::l2_normalize(z)?,
            target_z: ops::l2_normalize(k)?,
        })
    }

    /// target <- tau * target + (1 - tau) * online, for methods with an EMA target.
    pub fn update_target(&self, tau: f32) -> Result<()> {
        match &self.target {
            Some(t) => crate::optim::ema_update(&t.params, &self.online.params, tau),
            None => Ok(()),
        }
    }
}

/// `rows` random unit vectors of dimension `dim` (MoCo's initial queue).
fn random_unit_rows(engine: &Engine, rows: usize, dim: usize, seed: u64) -> Result<Tensor> {
    let mut rng = crate::rng::Rng::new(seed ^ 0x5155_4555);
    let mut v = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let row: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.extend(row.iter().map(|x| (x / norm) as f32));
    }
    Tensor::from_slice(engine, &v, &[rows.max(1), dim])
}
