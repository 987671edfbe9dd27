//! The built-in dataset: light grey shapes on a dark ground, generated on the fly, reproducible
//! from a seed.
//!
//! Ten classes, each a shape with a texture (solid disc, striped square, dotted disc, ...), drawn
//! at a random position and scale, slightly rotated, over a dark gradient in a random direction,
//! with at most one faint stroke and some pixel noise. The grey levels are the same in every
//! image.
//!
//! Why: a self-supervised method learns whatever two views of one image share and other images
//! do not. When every image had its own colours (an earlier version drew them at random, and a
//! later one varied only their brightness), those colours were that shortcut: BYOL learned them,
//! and they say nothing about the class. Measured at 16 px, width 1/8, batch 32, 500 steps (linear
//! probe, random encoder of the same initialization in brackets): random colours 13.0% (14.8%),
//! random brightness 29.2% (29.3%), fixed greys 49.5% (37.4%). With the greys fixed, what two
//! views share is the shape and its texture, which is the class. Rotation stays small because no
//! augmentation rotates: no method can learn from views alone that a turned square is a square.
//!
//! Image `i` of a split depends only on (seed, split, i): any image can be drawn alone, in any
//! order, on any thread, and always comes out the same.

use super::files::{check_index, check_out};
use super::{ImageSet, Split};
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::f32::consts::{PI, TAU};

pub const DEFAULT_COUNT: usize = 10_000;
pub const DEFAULT_SIDE: usize = 32;
/// The most images a synthetic set may have (ten times ImageNet).
pub const MAX_COUNT: usize = 10_000_000;

/// The test split holds the training count divided by this (2,000 for the default 10,000).
pub const TEST_DIVISOR: usize = 5;

pub const CLASSES: [&str; 10] = [
    "disc",
    "square",
    "triangle",
    "cross",
    "ring",
    "frame",
    "striped square",
    "checkered disc",
    "star",
    "dotted disc",
];

pub struct Synthetic {
    count: usize,
    side: usize,
    seed: u64,
    split: Split,
}

impl Synthetic {
    /// `count` images of `side` x `side` for `split`. Pretrain and Train are the same images
    /// (as for CIFAR-10); Test is drawn from a different stream.
    pub fn new(count: usize, side: usize, seed: u64, split: Split) -> Result<Synthetic> {
        // Images are generated on demand, but `data info` and the loader's shuffle walk all of
        // them: a count no run could use would never finish.
        if count == 0 || count > MAX_COUNT {
            return Err(Error::Invalid(format!(
                "synthetic: the image count must be in 1..={MAX_COUNT}, got {count}"
            )));
        }
        if !(8..=1024).contains(&side) {
            return Err(Error::Invalid(format!(
                "synthetic: image size {side} is not in 8..=1024"
            )));
        }
        Ok(Synthetic {
            count,
            side,
            seed,
            split,
        })
    }

    fn stream(&self) -> u64 {
        match self.split {
            Split::Pretrain | Split::Train => 1,
            Split::Test => 2,
        }
    }

    /// A generator for image `i` alone: its state mixes the seed, the split and the index.
    fn image_rng(&self, i: usize) -> Rng {
        let mix = |x: u64| Rng::new(x).next_u64();
        Rng::new(mix(mix(mix(self.seed) ^ self.stream()) ^ i as u64))
    }
}

impl ImageSet for Synthetic {
    fn name(&self) -> String {
        let split = match self.split {
            Split::Pretrain => "pretrain",
            Split::Train => "train",
            Split::Test => "test",
        };
        format!(
            "synthetic shapes ({split}, seed {}) {} x {}x{}",
            self.seed, self.count, self.side, self.side
        )
    }

    fn len(&self) -> usize {
        self.count
    }

    fn image_size(&self) -> (usize, usize) {
        (self.side, self.side)
    }

    fn classes(&self) -> Vec<String> {
        CLASSES.iter().map(|s| s.to_string()).collect()
    }

    /// Balanced: image `i` has class `i % 10`.
    fn label(&self, i: usize) -> Option<u32> {
        (i < self.count).then_some((i % CLASSES.len()) as u32)
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        check_out(out, self.side, self.side)?;
        check_index(i, self.count, &self.name())?;
        let mut rng = self.image_rng(i);
        let scene = Scene::new(i % CLASSES.len(), self.side, &mut rng);
        scene.render(&mut rng, out);
        Ok(())
    }
}

type Rgb = [f32; 3];

/// The grey levels every image uses: background gradient ends, stroke, shape, shape texture.
const BACKGROUND: [Rgb; 2] = [[0.08; 3], [0.24; 3]];
const STROKE: Rgb = [0.35; 3];
const SHAPE: Rgb = [0.9; 3];
const TEXTURE: Rgb = [0.4; 3];

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// 0 to 1 across a one-pixel band around `d = 0` (inside where `d < 0`).
fn coverage(d: f32, pixel: f32) -> f32 {
    (0.5 - d / pixel).clamp(0.0, 1.0)
}

/// A straight stroke over the background.
struct Stroke {
    a: [f32; 2],
    b: [f32; 2],
    half_width: f32,
}

impl Stroke {
    fn distance(&self, p: [f32; 2]) -> f32 {
        let ab = [self.b[0] - self.a[0], self.b[1] - self.a[1]];
        let ap = [p[0] - self.a[0], p[1] - self.a[1]];
        let len2 = (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-12);
        let t = ((ap[0] * ab[0] + ap[1] * ab[1]) / len2).clamp(0.0, 1.0);
        let dx = ap[0] - t * ab[0];
        let dy = ap[1] - t * ab[1];
        (dx * dx + dy * dy).sqrt() - self.half_width
    }
}

/// Everything random about one image except its pixel noise. Coordinates span [-1, 1].
struct Scene {
    class: usize,
    side: usize,
    /// The width of one pixel in image coordinates.
    pixel: f32,
    gradient_dir: [f32; 2],
    strokes: Vec<Stroke>,
    center: [f32; 2],
    radius: f32,
    cos: f32,
    sin: f32,
    /// Texture period in the shape's own units (radius = 1).
    period: f32,
    noise: f32,
}

impl Scene {
    fn new(class: usize, side: usize, rng: &mut Rng) -> Scene {
        let pixel = 2.0 / side as f32;
        let angle = rng.uniform(0.0, std::f64::consts::TAU) as f32;
        let gradient_dir = [angle.cos(), angle.sin()];
        let strokes = (0..rng.below(2))
            .map(|_| Stroke {
                a: [rng.uniform(-1.0, 1.0) as f32, rng.uniform(-1.0, 1.0) as f32],
                b: [rng.uniform(-1.0, 1.0) as f32, rng.uniform(-1.0, 1.0) as f32],
                half_width: pixel * rng.uniform(0.3, 0.6) as f32,
            })
            .collect();
        let radius = rng.uniform(0.55, 0.85) as f32;
        let reach = 1.0 - 0.8 * radius;
        let center = [
            rng.uniform(-reach as f64, reach as f64) as f32,
            rng.uniform(-reach as f64, reach as f64) as f32,
        ];
        let rotation = rng.uniform(-0.15, 0.15) as f32;
        // A few texture periods across the shape, but never finer than ~3 pixels.
        let period = (rng.uniform(0.35, 0.55) as f32).max(3.2 * pixel / radius);
        let noise = rng.uniform(0.0, 0.04) as f32;
        Scene {
            class,
            side,
            pixel,
            gradient_dir,
            strokes,
            center,
            radius,
            cos: rotation.cos(),
            sin: rotation.sin(),
            period,
            noise,
        }
    }

    fn render(&self, rng: &mut Rng, out: &mut [u8]) {
        let local_pixel = self.pixel / self.radius;
        for y in 0..self.side {
            for x in 0..self.side {
                let p = [
                    (x as f32 + 0.5) * self.pixel - 1.0,
                    (y as f32 + 0.5) * self.pixel - 1.0,
                ];
                let along = 0.5 + 0.5 * (p[0] * self.gradient_dir[0] + p[1] * self.gradient_dir[1]);
                let mut color = mix(BACKGROUND[0], BACKGROUND[1], along);
                for stroke in &self.strokes {
                    let a = coverage(stroke.distance(p), self.pixel);
                    if a > 0.0 {
                        color = mix(color, STROKE, a);
                    }
                }
                let d = [p[0] - self.center[0], p[1] - self.center[1]];
                if (d[0] * d[0] + d[1] * d[1]).sqrt() < self.radius * 1.2 + self.pixel {
                    // Into the shape's frame: rotate back and scale to radius 1.
                    let q = [
                        (self.cos * d[0] + self.sin * d[1]) / self.radius,
                        (-self.sin * d[0] + self.cos * d[1]) / self.radius,
                    ];
                    let (dist, texture) = self.shape(q, local_pixel);
                    let a = coverage(dist, local_pixel);
                    if a > 0.0 {
                        color = mix(color, mix(SHAPE, TEXTURE, texture), a);
                    }
                }
                let o = (y * self.side + x) * 3;
                for c in 0..3 {
                    let n = (rng.next_f64() as f32 - 0.5) * 2.0 * self.noise;
                    out[o + c] = ((color[c] + n).clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }

    /// The signed distance to the class's shape (negative inside) and how much of the second
    /// colour the texture shows there (0..1), in the shape's frame.
    fn shape(&self, q: [f32; 2], px: f32) -> (f32, f32) {
        let [x, y] = q;
        let r = (x * x + y * y).sqrt();
        // A square wave with one-pixel soft edges from a sine of period `period`.
        let wave = |s: f32| {
            (0.5 + (TAU * s / self.period).sin() * self.period / (TAU * px)).clamp(0.0, 1.0)
        };
        match self.class {
            0 => (r - 0.85, 0.0),
            1 => (square(x, y, 0.72), 0.0),
            2 => (triangle(x, y), 0.0),
            3 => (cross(x, y), 0.0),
            4 => ((r - 0.7).abs() - 0.2, 0.0),
            5 => (square(x, y, 0.66).abs() - 0.16, 0.0),
            6 => (square(x, y, 0.72), wave(x)),
            7 => {
                let (a, b) = (wave(x), wave(y));
                (r - 0.85, a + b - 2.0 * a * b)
            }
            8 => (star(x, y, r), 0.0),
            _ => {
                // Dots on a square grid inside a disc.
                let cell =
                    |s: f32| (s / self.period - (s / self.period).floor() - 0.5) * self.period;
                let (cx, cy) = (cell(x), cell(y));
                let dot = (cx * cx + cy * cy).sqrt() - 0.28 * self.period;
                (r - 0.85, coverage(dot, px))
            }
        }
    }
}

/// Signed distance to an axis-aligned rectangle of half-sides `hx`, `hy`.
fn rect(x: f32, y: f32, hx: f32, hy: f32) -> f32 {
    let dx = x.abs() - hx;
    let dy = y.abs() - hy;
    let outside = (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt();
    outside + dx.max(dy).min(0.0)
}

fn square(x: f32, y: f32, h: f32) -> f32 {
    rect(x, y, h, h)
}

/// A plus sign: the union of a horizontal and a vertical bar.
fn cross(x: f32, y: f32) -> f32 {
    rect(x, y, 0.9, 0.28).min(rect(x, y, 0.28, 0.9))
}

/// An equilateral triangle with circumradius 1: the largest distance to its three sides.
fn triangle(x: f32, y: f32) -> f32 {
    (0..3)
        .map(|k| {
            let a = PI / 2.0 + k as f32 * TAU / 3.0;
            x * a.cos() + y * a.sin() - 0.5
        })
        .fold(f32::MIN, f32::max)
}

/// A five-pointed star: the radius swings between 0.45 and 1 with the angle.
fn star(x: f32, y: f32, r: f32) -> f32 {
    let turn = (y.atan2(x) / TAU * 5.0).rem_euclid(1.0);
    let toward_tip = (turn - 0.5).abs() * 2.0;
    let edge = 0.42 + 0.58 * toward_tip;
    // Scaled down because the radial gap overstates the true distance on the star's slopes.
    (r - edge) * 0.6
}
