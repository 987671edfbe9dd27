//! f64 reference of max pooling (k x k, stride, padding that never wins): the outputs and, for the
//! backward, the flat index of each window's first maximum. Shared by the pooling and whole-step
//! tests.

/// Max pooling of `x` [n, c, h, w]; returns the outputs and each output's argmax index into `x`.
pub fn cpu_max_pool(
    x: &[f64],
    shape: [usize; 4],
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f64>, Vec<usize>) {
    let [n, c, h, w] = shape;
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut y = Vec::new();
    let mut arg = Vec::new();
    for plane in 0..n * c {
        for a in 0..oh {
            for b in 0..ow {
                let mut best = f64::NEG_INFINITY;
                let mut at = 0;
                for i in 0..k {
                    for j in 0..k {
                        let ih = (a * s + i) as isize - p as isize;
                        let iw = (b * s + j) as isize - p as isize;
                        if ih < 0 || iw < 0 || ih as usize >= h || iw as usize >= w {
                            continue;
                        }
                        let idx = plane * h * w + ih as usize * w + iw as usize;
                        if x[idx] > best {
                            best = x[idx];
                            at = idx;
                        }
                    }
                }
                y.push(best);
                arg.push(at);
            }
        }
    }
    (y, arg)
}
