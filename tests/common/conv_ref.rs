//! f64 reference of conv2d (NCHW, square kernel, stride, zero padding, optional bias): forward,
//! and the input, weight and bias gradients.
#![allow(dead_code)]

#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    pub fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Input index for output pixel (oh, ow) and tap (i, j), if inside the image.
    pub fn tap(&self, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let ih = (oh * self.stride + i) as isize - self.pad as isize;
        let iw = (ow * self.stride + j) as isize - self.pad as isize;
        (ih >= 0 && iw >= 0 && (ih as usize) < self.h && (iw as usize) < self.w)
            .then_some((ih as usize, iw as usize))
    }

    pub fn forward(&self, x: &[f64], wt: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
        let (oh, ow) = self.out();
        let mut y = vec![0.0; self.n * self.o * oh * ow];
        for n in 0..self.n {
            for o in 0..self.o {
                for a in 0..oh {
                    for b in 0..ow {
                        let mut s = bias.map_or(0.0, |bb| bb[o]);
                        for c in 0..self.c {
                            for i in 0..self.k {
                                for j in 0..self.k {
                                    if let Some((ih, iw)) = self.tap(a, b, i, j) {
                                        s += wt[((o * self.c + c) * self.k + i) * self.k + j]
                                            * x[((n * self.c + c) * self.h + ih) * self.w + iw];
                                    }
                                }
                            }
                        }
                        y[((n * self.o + o) * oh + a) * ow + b] = s;
                    }
                }
            }
        }
        y
    }

    pub fn backward(&self, x: &[f64], wt: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (oh, ow) = self.out();
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; wt.len()];
        let mut db = vec![0.0; self.o];
        for n in 0..self.n {
            for o in 0..self.o {
                for a in 0..oh {
                    for b in 0..ow {
                        let g = dy[((n * self.o + o) * oh + a) * ow + b];
                        db[o] += g;
                        for c in 0..self.c {
                            for i in 0..self.k {
                                for j in 0..self.k {
                                    if let Some((ih, iw)) = self.tap(a, b, i, j) {
                                        let wi = ((o * self.c + c) * self.k + i) * self.k + j;
                                        let xi = ((n * self.c + c) * self.h + ih) * self.w + iw;
                                        dx[xi] += wt[wi] * g;
                                        dw[wi] += x[xi] * g;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw, db)
    }
}
