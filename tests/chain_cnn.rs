//! The ResNet-shaped chain conv → batch norm → relu → conv (stride 2) → global average pool →
//! linear → mean of squares, against its f64 reference: every input and weight gradient.

mod common;
mod norm_ref;
use byol::ops::{self, BatchNormState};
use byol::rng::Rng;
use common::conv_ref::Conv;
use common::{rand_vec, OpCheck};
use norm_ref::NormRef;

const N: usize = 3;
const C: usize = 3;
const S: usize = 6;
const C1: usize = 5;
const C2: usize = 7;
const OUT: usize = 4;

fn conv1() -> Conv {
    Conv {
        n: N,
        c: C,
        h: S,
        w: S,
        o: C1,
        k: 3,
        stride: 1,
        pad: 1,
    }
}

fn conv2() -> Conv {
    Conv {
        n: N,
        c: C1,
        h: S,
        w: S,
        o: C2,
        k: 3,
        stride: 2,
        pad: 1,
    }
}

fn bn() -> NormRef {
    NormRef::batch_norm(&[N, C1, S, S])
}

/// Forward of the chain, keeping the intermediates the backward needs.
struct Trace {
    a1: Vec<f64>,
    h: Vec<f64>,
    pooled: Vec<f64>,
    y: Vec<f64>,
}

fn trace(x: &[Vec<f64>]) -> Trace {
    let (inp, w1, gamma, beta, w2, lw, lb) = (&x[0], &x[1], &x[2], &x[3], &x[4], &x[5], &x[6]);
    let a1 = conv1().forward(inp, w1, None);
    let h: Vec<f64> = bn()
        .forward(&a1, Some(gamma), Some(beta))
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let a2 = conv2().forward(&h, w2, None);
    let (oh, ow) = conv2().out();
    let pooled: Vec<f64> = a2
        .chunks(oh * ow)
        .map(|c| c.iter().sum::<f64>() / (oh * ow) as f64)
        .collect();
    let mut y = vec![0.0; N * OUT];
    for n in 0..N {
        for o in 0..OUT {
            y[n * OUT + o] = lb[o]
                + (0..C2)
                    .map(|c| pooled[n * C2 + c] * lw[c * OUT + o])
                    .sum::<f64>();
        }
    }
    Trace { a1, h, pooled, y }
}

fn forward(x: &[Vec<f64>]) -> Vec<f64> {
    let y = trace(x).y;
    vec![y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64]
}

fn backward(x: &[Vec<f64>], dloss: &[f64]) -> Vec<Vec<f64>> {
    let (w1, gamma, w2, lw) = (&x[1], &x[2], &x[4], &x[5]);
    let t = trace(x);
    let dy: Vec<f64> =
        t.y.iter()
            .map(|v| dloss[0] * 2.0 * v / t.y.len() as f64)
            .collect();
    let mut dlw = vec![0.0; C2 * OUT];
    let mut dlb = vec![0.0; OUT];
    let mut dpooled = [0.0; N * C2];
    for n in 0..N {
        for o in 0..OUT {
            dlb[o] += dy[n * OUT + o];
            for c in 0..C2 {
                dlw[c * OUT + o] += t.pooled[n * C2 + c] * dy[n * OUT + o];
                dpooled[n * C2 + c] += lw[c * OUT + o] * dy[n * OUT + o];
            }
        }
    }
    let (oh, ow) = conv2().out();
    let da2: Vec<f64> = dpooled
        .iter()
        .flat_map(|&d| std::iter::repeat_n(d / (oh * ow) as f64, oh * ow))
        .collect();
    let (dh, dw2, _) = conv2().backward(&t.h, w2, &da2);
    let dbn: Vec<f64> = dh
        .iter()
        .zip(&t.h)
        .map(|(d, h)| if *h > 0.0 { *d } else { 0.0 })
        .collect();
    let (da1, dgamma, dbeta) = bn().backward(&t.a1, Some(gamma), &dbn);
    let (dx, dw1, _) = conv1().backward(&x[0], w1, &da1);
    vec![dx, dw1, dgamma, dbeta, dw2, dlw, dlb]
}

#[test]
fn conv_bn_relu_conv_pool_linear_chain_matches_reference() {
    let mut rng = Rng::new(71);
    let e = common::engine();
    let state = BatchNormState::new(&e, C1).unwrap();
    OpCheck {
        name: "cnn chain",
        inputs: vec![
            (rand_vec(&mut rng, N * C * S * S), vec![N, C, S, S]),
            (rand_vec(&mut rng, C1 * C * 9), vec![C1, C, 3, 3]),
            (rand_vec(&mut rng, C1), vec![C1]),
            (rand_vec(&mut rng, C1), vec![C1]),
            (rand_vec(&mut rng, C2 * C1 * 9), vec![C2, C1, 3, 3]),
            (rand_vec(&mut rng, C2 * OUT), vec![C2, OUT]),
            (rand_vec(&mut rng, OUT), vec![OUT]),
        ],
        grad: vec![true; 7],
        cpu_forward: &forward,
        cpu_backward: &backward,
        gpu_forward: &|t| {
            let a1 = ops::conv2d(&t[0], &t[1], None, 1, 1)?;
            let h = ops::relu(&ops::batch_norm(
                &a1,
                Some(&t[2]),
                Some(&t[3]),
                &state,
                true,
            )?)?;
            let a2 = ops::conv2d(&h, &t[4], None, 2, 1)?;
            let pooled = ops::global_avg_pool(&a2)?;
            let y = ops::bias_add(&ops::matmul(&pooled, &t[5])?, &t[6])?;
            ops::mean(&ops::mul(&y, &y)?)
        },
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}
