//! A whole differentiable chain (matmul → bias → relu → matmul → mean of squares) against an f64
//! reference whose gradients are checked by finite differences.

mod common;
use byol::ops;
use byol::rng::Rng;
use common::{rand_vec, OpCheck};

const N: usize = 9;
const D: usize = 13;
const H: usize = 33;
const O: usize = 5;

fn forward(x: &[Vec<f64>]) -> Vec<f64> {
    let (inp, w1, b1, w2) = (&x[0], &x[1], &x[2], &x[3]);
    let mut loss = 0.0;
    for n in 0..N {
        let mut h = [0.0; H];
        for j in 0..H {
            let mut s = b1[j];
            for i in 0..D {
                s += inp[n * D + i] * w1[i * H + j];
            }
            h[j] = s.max(0.0);
        }
        for o in 0..O {
            let y: f64 = (0..H).map(|j| h[j] * w2[j * O + o]).sum();
            loss += y * y;
        }
    }
    vec![loss / (N * O) as f64]
}

fn backward(x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
    let (inp, w1, b1, w2) = (&x[0], &x[1], &x[2], &x[3]);
    let mut g = vec![
        vec![0.0; N * D],
        vec![0.0; D * H],
        vec![0.0; H],
        vec![0.0; H * O],
    ];
    for n in 0..N {
        let mut pre = [0.0; H];
        for j in 0..H {
            pre[j] = b1[j] + (0..D).map(|i| inp[n * D + i] * w1[i * H + j]).sum::<f64>();
        }
        let h: Vec<f64> = pre.iter().map(|v| v.max(0.0)).collect();
        let mut dh = [0.0; H];
        for o in 0..O {
            let y: f64 = (0..H).map(|j| h[j] * w2[j * O + o]).sum();
            let dyo = dy[0] * 2.0 * y / (N * O) as f64;
            for j in 0..H {
                g[3][j * O + o] += h[j] * dyo;
                dh[j] += w2[j * O + o] * dyo;
            }
        }
        for j in 0..H {
            let dpre = if pre[j] > 0.0 { dh[j] } else { 0.0 };
            g[2][j] += dpre;
            for i in 0..D {
                g[1][i * H + j] += inp[n * D + i] * dpre;
                g[0][n * D + i] += w1[i * H + j] * dpre;
            }
        }
    }
    g
}

#[test]
fn mlp_chain_gradients_match_reference() {
    let mut rng = Rng::new(41);
    OpCheck {
        name: "mlp chain",
        inputs: vec![
            (rand_vec(&mut rng, N * D), vec![N, D]),
            (rand_vec(&mut rng, D * H), vec![D, H]),
            (rand_vec(&mut rng, H), vec![H]),
            (rand_vec(&mut rng, H * O), vec![H, O]),
        ],
        grad: vec![true, true, true, true],
        cpu_forward: &forward,
        cpu_backward: &backward,
        gpu_forward: &|t| {
            let h = ops::relu(&ops::bias_add(&ops::matmul(&t[0], &t[1])?, &t[2])?)?;
            let y = ops::matmul(&h, &t[3])?;
            ops::mean(&ops::mul(&y, &y)?)
        },
        rel: 1e-4,
    }
    .run(&mut rng);
}
