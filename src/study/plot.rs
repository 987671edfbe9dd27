//! The study's figures, drawn pixel by pixel with the `image` crate and a tiny 5x7 bitmap font
//! (no plotting crate): linear accuracy, output std and embedding effective rank per epoch, and
//! positive vs negative cosine.

use super::{StudyResults, VariantResult};
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use serde_json::Value;
use std::path::Path;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const RED: Rgb<u8> = Rgb([214, 39, 40]);

/// One colour per variant, in table order.
const PALETTE: [Rgb<u8>; 14] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([127, 127, 127]),
    Rgb([23, 190, 207]),
    Rgb([188, 189, 34]),
    Rgb([227, 119, 194]),
    Rgb([0, 0, 128]),
    Rgb([128, 128, 0]),
    Rgb([0, 128, 128]),
    Rgb([255, 180, 0]),
];

/// A figure being drawn.
pub struct Canvas {
    pub img: RgbImage,
}

impl Canvas {
    pub fn new(w: u32, h: u32) -> Canvas {
        Canvas {
            img: RgbImage::from_pixel(w, h, WHITE),
        }
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.img
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.put(x, y, c);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham with a square pen); `dash` > 0 leaves gaps.
    fn line(&mut self, a: (i64, i64), b: (i64, i64), thick: i64, c: Rgb<u8>, dash: i64) {
        let (mut x, mut y) = a;
        let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
        let (sx, sy) = (if x < b.0 { 1 } else { -1 }, if y < b.1 { 1 } else { -1 });
        let mut err = dx + dy;
        let r = thick / 2;
        let mut n = 0i64;
        loop {
            if dash == 0 || (n / dash) % 2 == 0 {
                self.rect(x - r, y - r, x - r + thick - 1, y - r + thick - 1, c);
            }
            n += 1;
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale` pixels wide.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb<u8>) {
        for (i, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            let gx = x + i as i64 * 6 * scale;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let px = gx + col * scale;
                        let py = y + row as i64 * scale;
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
        }
    }
}

/// Width in pixels of `s` drawn at `scale`.
pub fn text_width(s: &str, scale: i64) -> i64 {
    (s.chars().count() as i64 * 6 - 1).max(0) * scale
}

/// The 5x7 font: seven rows, bit 4 is the leftmost column. Lowercase letters use the capitals;
/// unknown characters draw as a hollow box.
pub fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

/// Plot area inside a canvas, mapping data to pixels.
struct Axes {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn px(&self, x: f64) -> i64 {
        let t = (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12);
        self.left + (t * (self.right - self.left) as f64).round() as i64
    }

    fn py(&self, y: f64) -> i64 {
        let t = (y - self.y.0) / (self.y.1 - self.y.0).max(1e-12);
        self.bottom - (t * (self.bottom - self.top) as f64).round() as i64
    }

    /// Frame, horizontal grid lines with labels at `y_ticks`, and the title and axis names.
    fn frame(&self, c: &mut Canvas, y_ticks: &[(f64, String)], title: &str, y_name: &str) {
        for (v, label) in y_ticks {
            let y = self.py(*v);
            c.line((self.left, y), (self.right, y), 1, GRID, 0);
            c.text(self.left - 8 - text_width(label, 2), y - 7, label, 2, BLACK);
        }
        c.line((self.left, self.top), (self.left, self.bottom), 2, BLACK, 0);
        c.line(
            (self.left, self.bottom),
            (self.right, self.bottom),
            2,
            BLACK,
            0,
        );
        let mid = (self.left + self.right) / 2;
        c.text(mid - text_width(title, 2) / 2, 14, title, 2, BLACK);
        c.text(10, self.top - 26, y_name, 2, BLACK);
    }
}

/// Ticks every `step` covering [lo, hi] (none for a span that is not finite; at most 100).
fn ticks(lo: f64, hi: f64, step: f64, decimals: usize) -> Vec<(f64, String)> {
    let mut v = Vec::new();
    if !(lo.is_finite() && hi.is_finite() && step.is_finite() && step > 0.0) {
        return v;
    }
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-6 && v.len() < 100 {
        v.push((t, format!("{t:.decimals$}")));
        t += step;
    }
    v
}

/// A step of 1, 2 or 5 times a power of ten giving about `n` intervals over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// What a per-epoch line figure shows.
struct LineSpec<'a> {
    title: &'a str,
    y_name: &'a str,
    /// The plotted value of one `metrics.jsonl` line.
    value: &'a dyn Fn(&Value) -> Option<f64>,
    /// A variant without epochs (the untrained "Random") as a dashed horizontal line.
    flat: &'a dyn Fn(&VariantResult) -> Option<f64>,
    /// A labelled black dashed reference line.
    reference: Option<(f64, &'a str)>,
    /// Axis limits the values never leave (accuracy: 0..100).
    bounds: (f64, f64),
}

/// Variant `i`'s runs, one per seed of the study.
fn runs_of(s: &StudyResults, i: usize) -> Vec<&VariantResult> {
    std::iter::once(&s.variants[i])
        .chain(s.later_seeds.iter().filter_map(|seed| seed.get(i)))
        .collect()
}

/// Mean and sample sd (0 for one value) of `v`; None when empty.
fn mean_sd(v: &[f64]) -> Option<(f64, f64)> {
    super::stats::Spread::of(v).map(|s| (s.mean, s.sd))
}

/// `color` mixed with white: the shade of a variant's mean ± sd band.
fn tint(color: Rgb<u8>) -> Rgb<u8> {
    Rgb(color.0.map(|v| (255.0 - (255.0 - v as f64) * 0.25) as u8))
}

/// Per epoch: the mean over seeds of a variant's value and its sd.
fn seed_series(
    runs: &[&VariantResult],
    value: &dyn Fn(&Value) -> Option<f64>,
) -> Vec<(f64, f64, f64)> {
    let mut by_epoch: Vec<(f64, Vec<f64>)> = Vec::new();
    for r in runs {
        for m in &r.metrics {
            let (Some(e), Some(v)) = (m.get("epoch").and_then(Value::as_f64), value(m)) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            match by_epoch.iter_mut().find(|(x, _)| *x == e) {
                Some((_, vs)) => vs.push(v),
                None => by_epoch.push((e, vec![v])),
            }
        }
    }
    by_epoch.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_epoch
        .into_iter()
        .filter_map(|(e, vs)| mean_sd(&vs).map(|(m, sd)| (e, m, sd)))
        .collect()
}

/// One line per variant over epochs: with several seeds, the mean over seeds inside a shaded
/// mean ± sd band.
fn line_figure(s: &StudyResults, spec: &LineSpec) -> Canvas {
    let mut c = Canvas::new(1000, 560);
    let bands: Vec<Vec<(f64, f64, f64)>> = (0..s.variants.len())
        .map(|i| seed_series(&runs_of(s, i), spec.value))
        .collect();
    let series: Vec<Vec<(f64, f64)>> = bands
        .iter()
        .map(|b| b.iter().map(|&(e, m, _)| (e, m)).collect())
        .collect();
    // Untrained variants: the mean and sd of their one value over seeds.
    let flats: Vec<Option<(f64, f64)>> = (0..s.variants.len())
        .map(|i| {
            let v: Vec<f64> = runs_of(s, i)
                .iter()
                .filter_map(|r| (spec.flat)(r))
                .collect();
            mean_sd(&v)
        })
        .collect();
    let mut ys: Vec<f64> = bands
        .iter()
        .flat_map(|p| p.iter().flat_map(|q| [q.1 - q.2, q.1 + q.2]))
        .collect();
    ys.extend(
        s.variants
            .iter()
            .zip(&flats)
            .filter(|(r, _)| r.metrics.is_empty())
            .filter_map(|(_, f)| f.map(|(m, sd)| [m - sd, m + sd]))
            .flatten(),
    );
    ys.extend(spec.reference.map(|r| r.0));
    let (mut lo, mut hi) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    if ys.is_empty() {
        // Nothing to draw (e.g. no evaluation ran): an empty frame of a sensible height.
        lo = if spec.bounds.0.is_finite() {
            spec.bounds.0
        } else {
            0.0
        };
        hi = if spec.bounds.1 < 1e6 {
            spec.bounds.1
        } else {
            lo + 1.0
        };
    }
    let span = hi - lo;
    let step = nice_step(if span > 0.0 { span } else { hi.abs().max(1e-3) }, 5.0);
    lo = ((lo / step).floor() * step).max(spec.bounds.0);
    hi = ((hi / step).ceil() * step)
        .min(spec.bounds.1)
        .max(lo + step);
    let epochs = s.epochs.max(1) as f64;
    let ax = Axes {
        left: 90,
        top: 60,
        right: 660,
        bottom: 490,
        x: (if epochs > 1.0 { 1.0 } else { 0.0 }, epochs),
        y: (lo, hi),
    };
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let y_ticks = ticks(lo, hi, step, decimals);
    ax.frame(&mut c, &y_ticks, spec.title, spec.y_name);
    let x_step = nice_step(epochs, 10.0).max(1.0);
    for (v, label) in ticks(ax.x.0.max(1.0), epochs, x_step, 0) {
        let x = ax.px(v);
        c.line((x, ax.bottom), (x, ax.bottom + 6), 2, BLACK, 0);
        c.text(
            x - text_width(&label, 2) / 2,
            ax.bottom + 12,
            &label,
            2,
            BLACK,
        );
    }
    c.text(
        (ax.left + ax.right) / 2 - text_width("EPOCH", 2) / 2,
        ax.bottom + 40,
        "EPOCH",
        2,
        BLACK,
    );
    let ax_px_per_epoch =
        ((ax.px(epochs) - ax.px(ax.x.0)) as f64 / (epochs - ax.x.0).max(1.0)).max(1.0);
    // Bands first, so every line stays on top of every band.
    for (i, r) in s.variants.iter().enumerate() {
        let shade = tint(PALETTE[i % PALETTE.len()]);
        if r.metrics.is_empty() {
            if let Some((m, sd)) = flats[i].filter(|f| f.1 > 0.0) {
                c.rect(ax.left, ax.py(m + sd), ax.right, ax.py(m - sd), shade);
            }
            continue;
        }
        for w in bands[i].windows(2) {
            let (x0, x1) = (ax.px(w[0].0), ax.px(w[1].0));
            for x in x0..=x1 {
                let t = if x1 > x0 {
                    (x - x0) as f64 / (x1 - x0) as f64
                } else {
                    0.0
                };
                let m = w[0].1 + t * (w[1].1 - w[0].1);
                let sd = w[0].2 + t * (w[1].2 - w[0].2);
                c.rect(x, ax.py(m + sd), x, ax.py(m - sd), shade);
            }
        }
        if let [(e, m, sd)] = bands[i][..] {
            c.rect(
                ax.px(e) - 3,
                ax.py(m + sd),
                ax.px(e) + 3,
                ax.py(m - sd),
                shade,
            );
        }
    }
    let mut legend = 0i64;
    for (i, r) in s.variants.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // Lines that coincide (several collapsed variants at rank 1) stay visible: each series is
        // shifted a few pixels sideways and marks its points with its own shape.
        let shift = (i as f64 - (s.variants.len() as f64 - 1.0) / 2.0) * 3.0 / ax_px_per_epoch;
        let pts: Vec<(f64, f64)> = series[i].iter().map(|&(x, y)| (x + shift, y)).collect();
        let pts = &pts;
        let dash = if r.metrics.is_empty() {
            let Some((v, _)) = flats[i] else { continue };
            let y = ax.py(v);
            c.line((ax.left, y), (ax.right, y), 2, color, 8);
            6
        } else {
            if pts.is_empty() {
                continue;
            }
            for w in pts.windows(2) {
                c.line(
                    (ax.px(w[0].0), ax.py(w[0].1)),
                    (ax.px(w[1].0), ax.py(w[1].1)),
                    3,
                    color,
                    0,
                );
            }
            for p in pts {
                marker(&mut c, ax.px(p.0), ax.py(p.1), i, color);
            }
            0
        };
        let ly = ax.top + 10 + legend * 26;
        legend += 1;
        c.line((690, ly + 6), (730, ly + 6), 3, color, dash);
        if !r.metrics.is_empty() {
            marker(&mut c, 710, ly + 6, i, color);
        }
        c.text(740, ly, &r.name, 2, BLACK);
    }
    if let Some((v, label)) = spec.reference {
        let y = ax.py(v);
        c.line((ax.left, y), (ax.right, y), 2, BLACK, 4);
        let ly = ax.top + 10 + legend * 26;
        c.line((690, ly + 6), (730, ly + 6), 2, BLACK, 4);
        c.text(740, ly, label, 2, BLACK);
    }
    c
}

/// A point marker whose shape tells series `i` apart from others of similar colour: square,
/// hollow square, plus, cross, triangle.
fn marker(c: &mut Canvas, x: i64, y: i64, i: usize, color: Rgb<u8>) {
    match i % 5 {
        0 => c.rect(x - 4, y - 4, x + 4, y + 4, color),
        1 => {
            c.line((x - 5, y - 5), (x + 5, y - 5), 2, color, 0);
            c.line((x - 5, y + 5), (x + 5, y + 5), 2, color, 0);
            c.line((x - 5, y - 5), (x - 5, y + 5), 2, color, 0);
            c.line((x + 5, y - 5), (x + 5, y + 5), 2, color, 0);
        }
        2 => {
            c.line((x - 6, y), (x + 6, y), 3, color, 0);
            c.line((x, y - 6), (x, y + 6), 3, color, 0);
        }
        3 => {
            c.line((x - 5, y - 5), (x + 5, y + 5), 3, color, 0);
            c.line((x - 5, y + 5), (x + 5, y - 5), 3, color, 0);
        }
        _ => {
            c.line((x - 6, y + 5), (x + 6, y + 5), 2, color, 0);
            c.line((x - 6, y + 5), (x, y - 6), 2, color, 0);
            c.line((x + 6, y + 5), (x, y - 6), 2, color, 0);
        }
    }
}

fn field(m: &Value, key: &str) -> Option<f64> {
    m.get(key)?.as_f64()
}

/// The seed's first figure: linear accuracy (%) per epoch, one line per variant; an untrained
/// "Random" baseline is a dashed horizontal line, and chance (100 / classes) a dotted black one.
pub fn accuracy_figure(s: &StudyResults) -> Canvas {
    let chance = (s.classes > 0).then(|| (100.0 / s.classes as f64, "CHANCE"));
    let title = match s.seeds.len() {
        0 | 1 => "LINEAR ACCURACY PER EPOCH".to_string(),
        n => format!("LINEAR ACCURACY PER EPOCH: MEAN AND SD OF {n} SEEDS"),
    };
    line_figure(
        s,
        &LineSpec {
            title: &title,
            y_name: "ACCURACY %",
            value: &|m| Some(field(m, "linear_accuracy")? * 100.0),
            flat: &|r| Some(r.final_accuracy? * 100.0),
            reference: chance,
            bounds: (0.0, 100.0),
        },
    )
}

/// SimSiam's collapse diagnostic per epoch: the std of l2-normalized outputs, which falls to 0 as
/// the outputs collapse, against 1/sqrt(d) (unit vectors spread evenly).
pub fn std_figure(s: &StudyResults) -> Canvas {
    let reference = s.variants.iter().find_map(|r| r.output_std_reference);
    line_figure(
        s,
        &LineSpec {
            title: "STD OF NORMALIZED OUTPUTS PER EPOCH",
            y_name: "STD",
            value: &|m| field(m, "output_std"),
            flat: &|_| None,
            reference: reference.map(|v| (v, "1/SQRT(D)")),
            bounds: (0.0, 1.0),
        },
    )
}

/// Effective rank of the encoder's embeddings per evaluated epoch: partial collapse shows as a
/// rank far below the embedding size even when the outputs have not collapsed to one point.
pub fn rank_figure(s: &StudyResults) -> Canvas {
    line_figure(
        s,
        &LineSpec {
            title: "EFFECTIVE RANK OF THE EMBEDDINGS",
            y_name: "RANK",
            value: &|m| field(m, "embedding_rank"),
            flat: &|r| r.final_embedding_rank,
            reference: None,
            bounds: (0.0, f64::MAX),
        },
    )
}

/// A variant's name, then mean and sd over seeds of cos+ and of cos-.
type CosineBars<'a> = (&'a str, (f64, f64), (f64, f64));

/// The seed's second figure: per trained variant, the last epoch's mean cosine of positive pairs
/// (blue) and of negatives (red).
pub fn cosine_figure(s: &StudyResults) -> Canvas {
    let rows: Vec<CosineBars> = (0..s.variants.len())
        .filter_map(|i| {
            let runs = runs_of(s, i);
            let pos: Vec<f64> = runs.iter().filter_map(|r| r.final_cos_pos).collect();
            let neg: Vec<f64> = runs.iter().filter_map(|r| r.final_cos_neg).collect();
            Some((s.variants[i].name.as_str(), mean_sd(&pos)?, mean_sd(&neg)?))
        })
        .collect();
    // Wide enough for the longest word of a name ("NORMALIZATION" at 2x is 154 pixels).
    let group = 180i64;
    let width = (110 + group * rows.len().max(1) as i64 + 40).max(700);
    let mut c = Canvas::new(width as u32, 560);
    let lo = rows
        .iter()
        .map(|r| (r.1 .0 - r.1 .1).min(r.2 .0 - r.2 .1))
        .fold(0.0f64, f64::min)
        .max(-1.0);
    let lo = (lo / 0.2).floor() * 0.2;
    let ax = Axes {
        left: 110,
        top: 60,
        right: width - 40,
        bottom: 460,
        x: (0.0, 1.0),
        y: (lo, 1.0),
    };
    let y_ticks = ticks(lo, 1.0, 0.2, 1);
    let title = match s.seeds.len() {
        0 | 1 => "COSINE OF POSITIVES AND NEGATIVES (LAST EPOCH)".to_string(),
        n => format!("COSINES, LAST EPOCH (MEAN, SD OF {n} SEEDS)"),
    };
    ax.frame(&mut c, &y_ticks, &title, "COSINE");
    let zero = ax.py(0.0);
    for (i, (name, pos, neg)) in rows.iter().enumerate() {
        let x0 = ax.left + 20 + i as i64 * group;
        for (j, ((v, sd), color)) in [(*pos, BLUE), (*neg, RED)].into_iter().enumerate() {
            let bx = x0 + j as i64 * 50;
            c.rect(bx, ax.py(v), bx + 44, zero, color);
            // Whiskers: mean ± sd over seeds.
            if sd > 0.0 {
                let (top, bottom) = (ax.py((v + sd).min(1.0)), ax.py(v - sd));
                c.line((bx + 22, top), (bx + 22, bottom), 2, BLACK, 0);
                c.line((bx + 14, top), (bx + 30, top), 2, BLACK, 0);
                c.line((bx + 14, bottom), (bx + 30, bottom), 2, BLACK, 0);
            }
        }
        // The name under its bars, split into lines that fit the group.
        let mut y = ax.bottom + 12;
        let mut line = String::new();
        for word in name.split(' ') {
            if !line.is_empty() && text_width(&format!("{line} {word}"), 2) > group - 20 {
                c.text(x0, y, &line, 2, BLACK);
                y += 18;
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        c.text(x0, y, &line, 2, BLACK);
    }
    c.line((ax.left, zero), (ax.right, zero), 2, BLACK, 0);
    // Legend, top right.
    let lx = ax.right - 290;
    c.rect(lx, 38, lx + 14, 52, BLUE);
    c.text(lx + 20, 39, "POSITIVES", 2, BLACK);
    c.rect(lx + 140, 38, lx + 154, 52, RED);
    c.text(lx + 160, 39, "NEGATIVES", 2, BLACK);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study with nothing to plot (no variant, or no evaluation ran) still draws every figure,
    /// in bounded time: the rank figure's open upper bound once made its ticks loop forever.
    #[test]
    fn figures_of_an_empty_study_are_drawn() {
        let s = StudyResults {
            preset: "smoke".into(),
            dataset: "synthetic".into(),
            adapter: "none".into(),
            epochs: 2,
            classes: 10,
            wall_seconds: 0.0,
            train_seconds: 0.0,
            seeds: vec![0],
            variants: Vec::new(),
            later_seeds: Vec::new(),
            summary: Vec::new(),
        };
        for fig in [accuracy_figure, cosine_figure, std_figure, rank_figure] {
            fig(&s);
        }
        assert!(ticks(0.0, f64::MAX, 1.0, 0).len() <= 100);
        assert!(ticks(0.0, f64::INFINITY, 1.0, 0).is_empty());
        assert_eq!(ticks(0.0, 1.0, 0.5, 1).len(), 3);
    }
}
