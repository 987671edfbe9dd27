//! The background loader: deterministic order and parameters, epochs, drop_last, resuming,
//! errors from reads, and the thread's end when the loader drops. Needs no GPU.

use byol::data::augment::AugmentConfig;
use byol::data::loader::{HostBatch, Loader, LoaderOptions, LoaderPosition};
use byol::data::ImageSet;
use std::sync::Arc;

/// An in-memory set whose image i is a recognizable byte pattern; reading `fail_at` fails and
/// reading `panic_at` panics.
struct MemSet {
    len: usize,
    h: usize,
    w: usize,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
}

impl MemSet {
    fn new(len: usize) -> MemSet {
        MemSet {
            len,
            h: 3,
            w: 2,
            fail_at: None,
            panic_at: None,
        }
    }

    fn pixel(i: usize, k: usize) -> u8 {
        ((i * 31 + k * 7) % 251) as u8
    }
}

impl ImageSet for MemSet {
    fn name(&self) -> String {
        format!("memory set of {}", self.len)
    }
    fn len(&self) -> usize {
        self.len
    }
    fn image_size(&self) -> (usize, usize) {
        (self.h, self.w)
    }
    fn classes(&self) -> Vec<String> {
        (0..10).map(|c| c.to_string()).collect()
    }
    fn label(&self, i: usize) -> Option<u32> {
        Some((i % 10) as u32)
    }
    fn read_into(&self, i: usize, out: &mut [u8]) -> byol::Result<()> {
        if Some(i) == self.fail_at {
            return Err(byol::Error::Io(format!("image {i} is unreadable")));
        }
        assert!(Some(i) != self.panic_at, "reading image {i} panicked");
        for (k, b) in out.iter_mut().enumerate() {
            *b = Self::pixel(i, k);
        }
        Ok(())
    }
}

fn options(batch_size: usize, seed: u64) -> LoaderOptions {
    LoaderOptions {
        batch_size,
        seed,
        drop_last: false,
        augment: Some(AugmentConfig::byol()),
        epochs: Some(3),
        ..Default::default()
    }
}

fn all_batches(set: Arc<dyn ImageSet>, opts: LoaderOptions) -> Vec<HostBatch> {
    let mut loader = Loader::new(set, opts).unwrap();
    std::iter::from_fn(|| loader.next_batch())
        .map(|b| b.unwrap())
        .collect()
}

fn same(a: &HostBatch, b: &HostBatch) -> bool {
    a.indices == b.indices
        && a.pixels == b.pixels
        && a.view_params == b.view_params
        && (a.epoch, a.start) == (b.epoch, b.start)
}

#[test]
fn same_seed_gives_the_same_batches() {
    let set: Arc<dyn ImageSet> = Arc::new(MemSet::new(23));
    let a = all_batches(set.clone(), options(5, 3));
    let b = all_batches(set.clone(), options(5, 3));
    assert_eq!(a.len(), 3 * 5);
    assert!(a.iter().zip(&b).all(|(x, y)| same(x, y)));
    let c = all_batches(set, options(5, 4));
    assert!(a.iter().zip(&c).any(|(x, y)| x.indices != y.indices));
    assert!(a
        .iter()
        .zip(&c)
        .any(|(x, y)| x.view_params != y.view_params));
}

#[test]
fn every_epoch_is_a_new_permutation_with_matching_pixels_and_labels() {
    let set = Arc::new(MemSet::new(23));
    let batches = all_batches(set.clone(), options(5, 1));
    let mut orders = Vec::new();
    for epoch in 0..3 {
        let mut order = Vec::new();
        for b in batches.iter().filter(|b| b.epoch == epoch) {
            assert_eq!(b.start, order.len());
            assert_eq!((b.h, b.w), (3, 2));
            assert_eq!(b.view_params[0].len(), b.len());
            assert_eq!(b.view_params[1].len(), b.len());
            for (slot, &i) in b.indices.iter().enumerate() {
                let px = &b.pixels[slot * 18..(slot + 1) * 18];
                assert!(px
                    .iter()
                    .enumerate()
                    .all(|(k, &v)| v == MemSet::pixel(i, k)));
                assert_eq!(b.labels[slot], set.label(i));
            }
            order.extend_from_slice(&b.indices);
        }
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..23).collect::<Vec<_>>(), "epoch {epoch}");
        orders.push(order);
    }
    assert!(orders[0] != orders[1] && orders[1] != orders[2]);

    // Without shuffling, the set's own order.
    let plain = all_batches(
        set,
        LoaderOptions {
            shuffle: false,
            augment: None,
            epochs: Some(1),
            ..options(5, 1)
        },
    );
    let order: Vec<usize> = plain.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(order, (0..23).collect::<Vec<_>>());
    assert!(plain.iter().all(|b| b.view_params[0].is_empty()));
}

#[test]
fn drop_last_drops_the_partial_batch() {
    let set: Arc<dyn ImageSet> = Arc::new(MemSet::new(10));
    let sizes = |drop_last| {
        let opts = LoaderOptions {
            drop_last,
            epochs: Some(2),
            ..options(4, 0)
        };
        let loader = Loader::new(set.clone(), opts.clone()).unwrap();
        let per_epoch = loader.batches_per_epoch();
        drop(loader);
        let sizes: Vec<usize> = all_batches(set.clone(), opts)
            .iter()
            .map(|b| b.len())
            .collect();
        (per_epoch, sizes)
    };
    assert_eq!(sizes(true), (2, vec![4, 4, 4, 4]));
    assert_eq!(sizes(false), (3, vec![4, 4, 2, 4, 4, 2]));
}

#[test]
fn epoch_iterators_stop_at_the_boundary() {
    let set: Arc<dyn ImageSet> = Arc::new(MemSet::new(10));
    let mut loader = Loader::new(set, options(4, 2)).unwrap();
    for epoch in 0..3 {
        assert_eq!(loader.epoch(), epoch);
        let batches: Vec<HostBatch> = loader.epoch_batches().map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.epoch == epoch));
    }
    assert_eq!(loader.epoch(), 3);
    assert!(loader.epoch_batches().next().is_none());
    assert!(loader.next_batch().is_none(), "three epochs asked for");
}

#[test]
fn a_loader_resumes_exactly_where_another_was() {
    let set: Arc<dyn ImageSet> = Arc::new(MemSet::new(23));
    let opts = LoaderOptions {
        drop_last: true,
        ..options(5, 7)
    };
    let reference = all_batches(set.clone(), opts.clone());
    assert_eq!(reference.len(), 3 * 4);
    for stop_after in [0, 1, 3, 4, 6, 11] {
        let mut first = Loader::new(set.clone(), opts.clone()).unwrap();
        for _ in 0..stop_after {
            first.next_batch().unwrap().unwrap();
        }
        let pos = first.position();
        drop(first);
        let expected = reference.get(stop_after).map(|b| (b.epoch, b.start));
        assert_eq!(Some((pos.epoch, pos.index)), expected.or(Some((3, 0))));
        let resumed = Loader::starting_at(set.clone(), opts.clone(), pos).unwrap();
        let rest: Vec<HostBatch> = {
            let mut l = resumed;
            std::iter::from_fn(|| l.next_batch())
                .map(|b| b.unwrap())
                .collect()
        };
        assert_eq!(rest.len(), reference.len() - stop_after);
        assert!(rest
            .iter()
            .zip(&reference[stop_after..])
            .all(|(a, b)| same(a, b)));
    }
    // A position past the last full batch of an epoch moves to the next epoch.
    let mut l = Loader::starting_at(
        set,
        opts,
        LoaderPosition {
            epoch: 1,
            index: 21,
        },
    )
    .unwrap();
    assert_eq!(l.position(), LoaderPosition { epoch: 2, index: 0 });
    assert!(same(&l.next_batch().unwrap().unwrap(), &reference[8]));
}

#[test]
fn a_failing_read_is_an_error() {
    let set = MemSet {
        fail_at: Some(13),
        ..MemSet::new(23)
    };
    let opts = LoaderOptions {
        shuffle: false,
        ..options(5, 0)
    };
    let mut loader = Loader::new(Arc::new(set), opts.clone()).unwrap();
    assert!(loader.next_batch().unwrap().is_ok());
    assert!(loader.next_batch().unwrap().is_ok());
    match loader.next_batch() {
        Some(Err(e)) => assert!(e.to_string().contains("image 13"), "{e}"),
        other => panic!(
            "expected the read error, got {:?}",
            other.map(|b| b.map(|b| b.indices))
        ),
    }
    assert!(
        loader.next_batch().is_none(),
        "the thread stops after an error"
    );

    let set = MemSet {
        panic_at: Some(2),
        ..MemSet::new(23)
    };
    let mut loader = Loader::new(Arc::new(set), opts).unwrap();
    assert!(matches!(loader.next_batch(), Some(Err(_))));
    assert!(loader.next_batch().is_none());
}

#[test]
fn the_thread_ends_when_the_loader_drops() {
    let set = Arc::new(MemSet::new(50));
    let dyn_set: Arc<dyn ImageSet> = set.clone();
    let opts = LoaderOptions {
        epochs: None,
        ..options(4, 0)
    };
    // Dropped at once, and dropped while the thread waits on a full queue.
    for pulls in [0, 1, 5] {
        let mut loader = Loader::new(dyn_set.clone(), opts.clone()).unwrap();
        for _ in 0..pulls {
            loader.next_batch().unwrap().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(loader);
        // The thread held a clone of the set; joined, it has let go.
        assert_eq!(Arc::strong_count(&set), 2, "after {pulls} batches");
    }
}

#[test]
fn bad_options_are_errors() {
    let set: Arc<dyn ImageSet> = Arc::new(MemSet::new(3));
    let bad = |opts: LoaderOptions| Loader::new(set.clone(), opts).is_err();
    assert!(bad(LoaderOptions {
        batch_size: 0,
        ..options(4, 0)
    }));
    assert!(bad(LoaderOptions {
        drop_last: true,
        ..options(4, 0)
    }));
    let mut broken = AugmentConfig::byol();
    broken[1].flip_p = -1.0;
    assert!(bad(LoaderOptions {
        augment: Some(broken),
        ..options(2, 0)
    }));
    assert!(Loader::new(Arc::new(MemSet::new(0)), options(1, 0)).is_err());
}

#[test]
fn shards_are_the_batch_cut_in_order_and_uneven_splits_are_refused() {
    let set: Arc<dyn ImageSet> = Arc::new(MemSet::new(24));
    let batch = all_batches(set, options(12, 5)).remove(0);
    let shards: Vec<HostBatch> = (0..3).map(|r| batch.shard(r, 3).unwrap()).collect();
    let bytes = batch.h * batch.w * 3;
    for (r, s) in shards.iter().enumerate() {
        assert_eq!(s.indices, batch.indices[4 * r..4 * r + 4]);
        assert_eq!(s.labels, batch.labels[4 * r..4 * r + 4]);
        assert_eq!(s.pixels, batch.pixels[4 * r * bytes..(4 * r + 4) * bytes]);
        for v in 0..2 {
            assert_eq!(s.view_params[v], batch.view_params[v][4 * r..4 * r + 4]);
        }
        assert_eq!(s.start, batch.start + 4 * r);
    }
    // Put back together, the shards are the batch.
    let joined: Vec<usize> = shards.iter().flat_map(|s| s.indices.clone()).collect();
    assert_eq!(joined, batch.indices);
    for (rank, ranks) in [(0, 5), (3, 3), (0, 0)] {
        let e = batch.shard(rank, ranks).unwrap_err().to_string();
        assert!(e.contains("cannot be split"), "{e}");
    }
}
