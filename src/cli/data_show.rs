//! `byol data show`: a PNG grid of images and their two BYOL views, to see what the network sees.
//! Rows are images (one per class, named at the left, where the set has labels); columns are the
//! original, view 1 and view 2 (de-normalized for display), with a header row naming them.

use crate::data::augment::AugmentConfig;
use crate::data::loader::HostBatch;
use crate::data::views::two_views;
use crate::data::{ImageSet, Split};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::path::Path;

/// Cells are enlarged by a whole factor (nearest neighbour) to at least this many pixels.
const MIN_CELL: usize = 96;
const GAP: usize = 4;
const BACKGROUND: [u8; 3] = [40, 40, 40];
const INK: [u8; 3] = [230, 230, 230];
/// Font pixels per glyph pixel, and the header row's height.
const TEXT_SCALE: usize = 2;
const HEADER: usize = 7 * TEXT_SCALE + 2 * GAP;
/// How far into a labeled set to look for an image of every class.
const CLASS_SCAN: usize = 20_000;

/// The images to show: the first of each class where the set is labeled (up to `count` classes,
/// found in the first `CLASS_SCAN` images), else `count` spread evenly over the set.
fn pick(set: &dyn ImageSet, count: usize) -> Vec<usize> {
    let classes = set.classes().len();
    if classes > 0 && set.label(0).is_some() {
        let mut first: Vec<Option<usize>> = vec![None; classes];
        for i in 0..set.len().min(CLASS_SCAN) {
            if let Some(c) = set.label(i).map(|c| c as usize).filter(|&c| c < classes) {
                first[c].get_or_insert(i);
            }
            if first.iter().all(Option::is_some) {
                break;
            }
        }
        let found: Vec<usize> = first.into_iter().flatten().take(count.max(1)).collect();
        if !found.is_empty() {
            return found;
        }
    }
    let count = count.min(set.len());
    (0..count).map(|k| k * set.len() / count).collect()
}

/// Draws `text` with the study figures' 5x7 font, top-left at (x, y), clipped to the image.
fn draw_text(grid: &mut image::RgbImage, x: usize, y: usize, text: &str) {
    for (i, ch) in text.chars().enumerate() {
        let gx = x + i * 6 * TEXT_SCALE;
        for (row, bits) in crate::study::plot::glyph(ch).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..TEXT_SCALE {
                    for dx in 0..TEXT_SCALE {
                        let (px, py) = (gx + col * TEXT_SCALE + dx, y + row * TEXT_SCALE + dy);
                        if px < grid.width() as usize && py < grid.height() as usize {
                            grid.put_pixel(px as u32, py as u32, image::Rgb(INK));
                        }
                    }
                }
            }
        }
    }
}

/// Writes the grid for `count` images of the pretraining split of `dataset` (a dataset SPEC).
pub fn show(engine: &Engine, dataset: &str, out: &Path, count: usize) -> Result<()> {
    let set = crate::data::open(dataset, Split::Pretrain)?;
    show_set(engine, &*set, out, count, 0)
}

/// Writes the grid for one image of each class of `set` (at most `count`; `count` images spread
/// over it when it has no labels), views drawn with BYOL's augmentations from `seed`, at the
/// images' own size (the shorter side).
pub fn show_set(
    engine: &Engine,
    set: &dyn ImageSet,
    out: &Path,
    count: usize,
    seed: u64,
) -> Result<()> {
    if count == 0 || set.is_empty() {
        return Err(Error::Invalid(format!(
            "data show: {} has no images to show",
            set.name()
        )));
    }
    let (h, w) = set.image_size();
    let size = h.min(w);
    let indices = pick(set, count);
    let count = indices.len();
    let names = set.classes();
    let row_name = |i: usize| {
        set.label(i)
            .and_then(|c| names.get(c as usize).cloned())
            .unwrap_or_default()
    };
    let label_w = (0..count)
        .map(|r| row_name(indices[r]).chars().count())
        .max()
        .unwrap_or(0)
        .min(16)
        * 6
        * TEXT_SCALE;
    let left = if label_w > 0 { label_w + 2 * GAP } else { GAP };
    let mut pixels = vec![0u8; count * h * w * 3];
    for (slot, &i) in pixels.chunks_exact_mut(h * w * 3).zip(&indices) {
        set.read_into(i, slot)?;
    }
    let cfgs = AugmentConfig::byol();
    let mut rng = Rng::new(seed);
    let view_params = [
        (0..count).map(|_| cfgs[0].sample(&mut rng, h, w)).collect(),
        (0..count).map(|_| cfgs[1].sample(&mut rng, h, w)).collect(),
    ];
    let batch = HostBatch {
        labels: indices.iter().map(|&i| set.label(i)).collect(),
        indices,
        pixels,
        h,
        w,
        view_params,
        epoch: 0,
        start: 0,
    };
    let (v1, v2) = two_views(engine, &batch, &cfgs[0], &cfgs[1], size, Some(&mut rng))?;
    let views = [
        displayable(&v1.to_vec()?, &cfgs[0], size * size),
        displayable(&v2.to_vec()?, &cfgs[1], size * size),
    ];

    let scale = MIN_CELL.div_ceil(h.max(w)).max(1);
    let cell_w = w.max(size) * scale;
    let cell_h = h.max(size) * scale;
    let grid_w = left + 3 * cell_w + 3 * GAP;
    let grid_h = HEADER + count * cell_h + count * GAP;
    let mut grid =
        image::RgbImage::from_pixel(grid_w as u32, grid_h as u32, image::Rgb(BACKGROUND));
    for (col, title) in ["original", "view 1", "view 2"].into_iter().enumerate() {
        draw_text(&mut grid, left + col * (cell_w + GAP), GAP, title);
    }
    let plane = size * size;
    for row in 0..count {
        let y0 = HEADER + row * (cell_h + GAP);
        let name: String = row_name(batch.indices[row]).chars().take(16).collect();
        draw_text(&mut grid, GAP, y0 + cell_h / 2, &name);
        let original = &batch.pixels[row * h * w * 3..(row + 1) * h * w * 3];
        paste(&mut grid, left, y0, h, w, scale, |y, x| {
            let k = (y * w + x) * 3;
            [original[k], original[k + 1], original[k + 2]]
        });
        for (col, view) in views.iter().enumerate() {
            let x0 = left + (col + 1) * (cell_w + GAP);
            let img = &view[row * 3 * plane..(row + 1) * 3 * plane];
            paste(&mut grid, x0, y0, size, size, scale, |y, x| {
                let k = y * size + x;
                [img[k], img[k + plane], img[k + 2 * plane]]
            });
        }
    }
    grid.save(out)
        .map_err(|e| Error::Io(format!("writing {}: {e}", out.display())))
}

/// Undoes the normalization of a [N, 3, S, S] view (`plane` = S * S) and quantizes it to bytes.
fn displayable(view: &[f32], cfg: &AugmentConfig, plane: usize) -> Vec<u8> {
    view.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % 3;
            let v = v * cfg.std[c] + cfg.mean[c];
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect()
}

/// Draws an h x w picture enlarged `scale` times at (x0, y0).
fn paste(
    grid: &mut image::RgbImage,
    x0: usize,
    y0: usize,
    h: usize,
    w: usize,
    scale: usize,
    pixel: impl Fn(usize, usize) -> [u8; 3],
) {
    for y in 0..h * scale {
        for x in 0..w * scale {
            let rgb = pixel(y / scale, x / scale);
            grid.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
        }
    }
}
