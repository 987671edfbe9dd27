//! `byol data show`: a PNG grid of images and their two BYOL views, to see what the network sees.
//! Rows are images; columns are the original, view 1 and view 2 (de-normalized for display).

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

/// Writes the grid for `count` images of the pretraining split of `dataset` (a dataset SPEC).
pub fn show(engine: &Engine, dataset: &str, out: &Path, count: usize) -> Result<()> {
    let set = crate::data::open(dataset, Split::Pretrain)?;
    show_set(engine, &*set, out, count, 0)
}

/// Writes the grid for `count` images spread over `set`, views drawn with BYOL's augmentations
/// from `seed`, at the images' own size (the shorter side).
pub fn show_set(
    engine: &Engine,
    set: &dyn ImageSet,
    out: &Path,
    count: usize,
    seed: u64,
) -> Result<()> {
    let count = count.min(set.len());
    if count == 0 {
        return Err(Error::Invalid(format!(
            "data show: {} has no images to show",
            set.name()
        )));
    }
    let (h, w) = set.image_size();
    let size = h.min(w);
    let indices: Vec<usize> = (0..count).map(|k| k * set.len() / count).collect();
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
    let grid_w = 3 * cell_w + 4 * GAP;
    let grid_h = count * cell_h + (count + 1) * GAP;
    let mut grid =
        image::RgbImage::from_pixel(grid_w as u32, grid_h as u32, image::Rgb(BACKGROUND));
    let plane = size * size;
    for row in 0..count {
        let y0 = GAP + row * (cell_h + GAP);
        let original = &batch.pixels[row * h * w * 3..(row + 1) * h * w * 3];
        paste(&mut grid, GAP, y0, h, w, scale, |y, x| {
            let k = (y * w + x) * 3;
            [original[k], original[k + 1], original[k + 2]]
        });
        for (col, view) in views.iter().enumerate() {
            let x0 = GAP + (col + 1) * (cell_w + GAP);
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
