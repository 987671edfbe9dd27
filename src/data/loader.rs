//! A background batch loader: a thread reads shuffled images into host batches (and draws their
//! augmentation parameters) while the GPU works on the previous batch.
//!
//! Everything random is derived from the seed and the position, not from a running state: epoch
//! `e`'s order is a Fisher-Yates shuffle seeded by (seed, e), and the augmentation parameters of
//! the batch starting at position `i` of epoch `e` are drawn from a generator seeded by
//! (seed, e, i). So the same seed gives the same batches, and a loader started at a saved
//! [`LoaderPosition`] continues exactly where the saved one would have.

use super::augment::{AugmentConfig, ViewParams};
use super::ImageSet;
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Batches prepared ahead of the consumer.
const QUEUE_DEPTH: usize = 2;

#[derive(Clone, Debug)]
pub struct LoaderOptions {
    pub batch_size: usize,
    pub seed: u64,
    /// A new random order every epoch (off: the set's own order, for evaluation).
    pub shuffle: bool,
    /// Drop the last batch of an epoch when it is not full.
    pub drop_last: bool,
    /// Draw parameters of two views per image on the loader thread; `None` leaves
    /// `HostBatch::view_params` empty.
    pub augment: Option<[AugmentConfig; 2]>,
    /// Stop after this many epochs (counted from epoch 0); `None` runs forever.
    pub epochs: Option<usize>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 256,
            seed: 0,
            shuffle: true,
            drop_last: true,
            augment: None,
            epochs: None,
        }
    }
}

/// Where the next batch starts: epoch and position in that epoch's order. Save it with a
/// checkpoint and pass it to [`Loader::starting_at`] to resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoaderPosition {
    pub epoch: usize,
    pub index: usize,
}

/// A batch of images on the host, ready for upload.
#[derive(Clone, Debug)]
pub struct HostBatch {
    /// N images of h x w x 3 bytes, RGB, HWC, one after another.
    pub pixels: Vec<u8>,
    /// Which images of the set these are.
    pub indices: Vec<usize>,
    pub labels: Vec<Option<u32>>,
    pub h: usize,
    pub w: usize,
    /// Augmentation parameters of view 1 and view 2 (empty without `LoaderOptions::augment`).
    pub view_params: [Vec<ViewParams>; 2],
    pub epoch: usize,
    /// Position of the first image in the epoch's order.
    pub start: usize,
}

impl HostBatch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Rank `rank`'s share of the batch over `ranks` processes: its contiguous 1/ranks of the
    /// images, with their labels and augmentation parameters (drawn for the whole batch, so the
    /// views of a shard are rows of the whole batch's views). The length must divide evenly.
    pub fn shard(&self, rank: usize, ranks: usize) -> Result<HostBatch> {
        let n = self.len();
        if ranks == 0 || rank >= ranks || !n.is_multiple_of(ranks) {
            return Err(Error::Invalid(format!(
                "a batch of {n} images cannot be split into {ranks} equal shards (rank {rank})"
            )));
        }
        let per = n / ranks;
        let (lo, hi) = (rank * per, (rank + 1) * per);
        let bytes = self.h * self.w * 3;
        let params = |v: &Vec<ViewParams>| {
            if v.is_empty() {
                Vec::new()
            } else {
                v[lo..hi].to_vec()
            }
        };
        Ok(HostBatch {
            pixels: self.pixels[lo * bytes..hi * bytes].to_vec(),
            indices: self.indices[lo..hi].to_vec(),
            labels: self.labels[lo..hi].to_vec(),
            h: self.h,
            w: self.w,
            view_params: [params(&self.view_params[0]), params(&self.view_params[1])],
            epoch: self.epoch,
            start: self.start + lo,
        })
    }
}

pub struct Loader {
    rx: Option<Receiver<Result<HostBatch>>>,
    worker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: LoaderPosition,
    peeked: Option<Result<HostBatch>>,
    plan: Plan,
}

/// The pure arithmetic of batch positions, shared by the thread and the consumer.
#[derive(Clone, Copy, Debug)]
struct Plan {
    len: usize,
    batch_size: usize,
    drop_last: bool,
}

impl Plan {
    /// `pos` moved to the next epoch's start when no (allowed) batch starts there.
    fn settle(&self, pos: LoaderPosition) -> LoaderPosition {
        let need = if self.drop_last { self.batch_size } else { 1 };
        if pos.index + need > self.len {
            LoaderPosition {
                epoch: pos.epoch + 1,
                index: 0,
            }
        } else {
            pos
        }
    }

    fn batch_len(&self, pos: LoaderPosition) -> usize {
        self.batch_size.min(self.len - pos.index)
    }

    fn after(&self, pos: LoaderPosition) -> LoaderPosition {
        self.settle(LoaderPosition {
            epoch: pos.epoch,
            index: pos.index + self.batch_len(pos),
        })
    }
}

impl Loader {
    /// A loader from the start of epoch 0.
    pub fn new(set: Arc<dyn ImageSet>, options: LoaderOptions) -> Result<Loader> {
        Self::starting_at(set, options, LoaderPosition::default())
    }

    /// A loader whose first batch is the one a loader with the same seed would give at `start`.
    pub fn starting_at(
        set: Arc<dyn ImageSet>,
        options: LoaderOptions,
        start: LoaderPosition,
    ) -> Result<Loader> {
        let len = set.len();
        let bs = options.batch_size;
        if bs == 0 || len == 0 || (options.drop_last && len < bs) {
            return Err(Error::Invalid(format!(
                "loader: batch size {bs} over {} gives no batch{}",
                set.name(),
                if options.drop_last {
                    " (drop_last is on)"
                } else {
                    ""
                }
            )));
        }
        let (h, w) = set.image_size();
        if h == 0 || w == 0 {
            return Err(Error::Invalid(format!(
                "loader: {} has empty images",
                set.name()
            )));
        }
        if let Some(cfgs) = &options.augment {
            for c in cfgs {
                c.validate()?;
            }
        }
        let plan = Plan {
            len,
            batch_size: bs,
            drop_last: options.drop_last,
        };
        let start = plan.settle(start);
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let worker = std::thread::Builder::new()
            .name("byol-loader".into())
            .spawn(move || {
                let mut order: Option<(usize, Vec<usize>)> = None;
                let mut pos = start;
                while !stop_flag.load(Ordering::Relaxed)
                    && options.epochs.is_none_or(|e| pos.epoch < e)
                {
                    if order.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
                        order = Some((pos.epoch, epoch_order(&options, pos.epoch, len)));
                    }
                    let (_, ord) = order.as_ref().expect("order just made");
                    let indices = &ord[pos.index..pos.index + plan.batch_len(pos)];
                    let batch = read_batch(&*set, &options, pos, indices, &stop_flag);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                    pos = plan.after(pos);
                }
            })
            .map_err(|e| Error::Io(format!("cannot start the loader thread: {e}")))?;
        Ok(Loader {
            rx: Some(rx),
            worker: Some(worker),
            stop,
            next: start,
            peeked: None,
            plan,
        })
    }

    /// The next batch; `None` after the last epoch (or after an error was returned).
    pub fn next_batch(&mut self) -> Option<Result<HostBatch>> {
        let item = self.pull()?;
        if let Ok(b) = &item {
            self.next = self.plan.after(LoaderPosition {
                epoch: b.epoch,
                index: b.start,
            });
        }
        Some(item)
    }

    /// Where the next batch starts (save it to resume with [`Loader::starting_at`]).
    pub fn position(&self) -> LoaderPosition {
        self.next
    }

    /// The epoch of the next batch.
    pub fn epoch(&self) -> usize {
        self.next.epoch
    }

    /// Batches per epoch (the last partial one counted unless dropped).
    pub fn batches_per_epoch(&self) -> usize {
        Loader::batches_in(self.plan.len, self.plan.batch_size, self.plan.drop_last)
    }

    /// Batches of `batch_size` in an epoch over `len` images.
    pub fn batches_in(len: usize, batch_size: usize, drop_last: bool) -> usize {
        if drop_last {
            len / batch_size.max(1)
        } else {
            len.div_ceil(batch_size.max(1))
        }
    }

    /// The remaining batches of the current epoch; ends at the epoch boundary.
    pub fn epoch_batches(&mut self) -> EpochBatches<'_> {
        let epoch = self.next.epoch;
        EpochBatches {
            loader: self,
            epoch,
        }
    }

    fn pull(&mut self) -> Option<Result<HostBatch>> {
        if let Some(item) = self.peeked.take() {
            return Some(item);
        }
        match self.rx.as_ref()?.recv() {
            Ok(item) => Some(item),
            Err(_) => {
                // The thread ended: normally after the last epoch, or because a read panicked.
                self.rx = None;
                let panicked = self.worker.take().is_some_and(|w| w.join().is_err());
                panicked.then(|| Err(Error::Io("the loader thread panicked".into())))
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes a thread blocked on a full queue.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Iterator over the rest of one epoch's batches.
pub struct EpochBatches<'a> {
    loader: &'a mut Loader,
    epoch: usize,
}

impl Iterator for EpochBatches<'_> {
    type Item = Result<HostBatch>;

    fn next(&mut self) -> Option<Result<HostBatch>> {
        let item = self.loader.pull()?;
        if matches!(&item, Ok(b) if b.epoch != self.epoch) {
            self.loader.peeked = Some(item);
            return None;
        }
        self.loader.peeked = Some(item);
        self.loader.next_batch()
    }
}

/// SplitMix64's finalizer: spreads nearby seeds into unrelated generator states.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent generator for (seed, purpose, epoch, position).
fn stream(seed: u64, purpose: u64, epoch: usize, index: usize) -> Rng {
    Rng::new(mix(mix(mix(seed ^ purpose) ^ epoch as u64) ^ index as u64))
}

const SHUFFLE_STREAM: u64 = 0x5348_5546;
const AUGMENT_STREAM: u64 = 0x4155_474D;

fn epoch_order(options: &LoaderOptions, epoch: usize, len: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if options.shuffle {
        let mut rng = stream(options.seed, SHUFFLE_STREAM, epoch, 0);
        for i in (1..len).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    order
}

fn read_batch(
    set: &dyn ImageSet,
    options: &LoaderOptions,
    pos: LoaderPosition,
    indices: &[usize],
    stop: &AtomicBool,
) -> Result<HostBatch> {
    let (h, w) = set.image_size();
    let bytes = h * w * 3;
    let mut pixels = vec![0u8; indices.len() * bytes];
    for (slot, &i) in pixels.chunks_exact_mut(bytes).zip(indices) {
        if stop.load(Ordering::Relaxed) {
            break; // the loader is being dropped; nobody will see this batch
        }
        set.read_into(i, slot)?;
    }
    let view_params = match &options.augment {
        Some([c1, c2]) => {
            let mut rng = stream(options.seed, AUGMENT_STREAM, pos.epoch, pos.index);
            let v1 = indices.iter().map(|_| c1.sample(&mut rng, h, w)).collect();
            let v2 = indices.iter().map(|_| c2.sample(&mut rng, h, w)).collect();
            [v1, v2]
        }
        None => [Vec::new(), Vec::new()],
    };
    Ok(HostBatch {
        pixels,
        indices: indices.to_vec(),
        labels: indices.iter().map(|&i| set.label(i)).collect(),
        h,
        w,
        view_params,
        epoch: pos.epoch,
        start: pos.index,
    })
}
