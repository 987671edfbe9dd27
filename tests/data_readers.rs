//! Dataset readers: small fake STL-10 / CIFAR-10 / IDX / image-folder datasets written to a temp
//! folder and read back byte for byte, every malformed-file case, the built-in synthetic set,
//! and the real Fashion-MNIST that Debian ships. No GPU needed.

use byol::data::{self, ImageSet, Split};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "byol-data-readers-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn spec(&self, kind: &str) -> String {
        format!("{kind}:{}", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn read(set: &dyn ImageSet, i: usize) -> Vec<u8> {
    let (h, w) = set.image_size();
    let mut out = vec![0u8; h * w * 3];
    set.read_into(i, &mut out).unwrap();
    out
}

fn open_err(spec: &str, split: Split) -> String {
    match data::open(spec, split) {
        Ok(set) => panic!("{spec} opened as {} but should have failed", set.name()),
        Err(e) => e.to_string(),
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "error {message:?} should mention {part:?}"
        );
    }
}

// ---------------------------------------------------------------- STL-10

/// Pixel (x, y) of channel c of fake image `img`; x and y weigh differently so a transposed
/// read shows up.
fn stl_value(img: usize, c: usize, x: usize, y: usize) -> u8 {
    ((img * 31 + c * 7 + x * 3 + y * 5) % 251) as u8
}

/// STL-10 layout: per channel a 96x96 plane stored column by column (x slow, y fast).
fn stl_images(first: usize, count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count * 27648];
    for n in 0..count {
        for c in 0..3 {
            for x in 0..96 {
                for y in 0..96 {
                    bytes[n * 27648 + c * 9216 + x * 96 + y] = stl_value(first + n, c, x, y);
                }
            }
        }
    }
    bytes
}

/// Unlabeled images 0..4, train 100..103 (labels 1, 10, 5 on disk), test 200..202.
fn fake_stl(root: &Path) -> PathBuf {
    let dir = root.join("stl10_binary");
    write(&dir.join("unlabeled_X.bin"), &stl_images(0, 4));
    write(&dir.join("train_X.bin"), &stl_images(100, 3));
    write(&dir.join("train_y.bin"), &[1, 10, 5]);
    write(&dir.join("test_X.bin"), &stl_images(200, 2));
    write(&dir.join("test_y.bin"), &[2, 3]);
    dir
}

fn check_stl_image(set: &dyn ImageSet, i: usize, img: usize) {
    let out = read(set, i);
    for y in 0..96 {
        for x in 0..96 {
            for c in 0..3 {
                assert_eq!(
                    out[(y * 96 + x) * 3 + c],
                    stl_value(img, c, x, y),
                    "image {i} pixel x={x} y={y} c={c}"
                );
            }
        }
    }
}

#[test]
fn stl10_reads_every_split_in_hwc_order() {
    let tmp = TempDir::new("stl");
    fake_stl(tmp.path());
    // The parent folder and the stl10_binary folder itself both work.
    let spec = tmp.spec("stl10");
    let pretrain = data::open(&spec, Split::Pretrain).unwrap();
    assert_eq!(pretrain.len(), 7);
    assert_eq!(pretrain.image_size(), (96, 96));
    assert_eq!(pretrain.classes().len(), 10);
    assert_eq!(pretrain.classes()[0], "airplane");
    for i in 0..4 {
        assert_eq!(pretrain.label(i), None, "unlabeled image {i}");
        check_stl_image(pretrain.as_ref(), i, i);
    }
    assert_eq!(pretrain.label(4), Some(0));
    assert_eq!(pretrain.label(5), Some(9));
    assert_eq!(pretrain.label(6), Some(4));
    check_stl_image(pretrain.as_ref(), 6, 102);

    let inner = format!("stl10:{}", tmp.path().join("stl10_binary").display());
    let train = data::open(&inner, Split::Train).unwrap();
    assert_eq!(train.len(), 3);
    assert_eq!(
        (0..3).map(|i| train.label(i)).collect::<Vec<_>>(),
        [Some(0), Some(9), Some(4)]
    );
    check_stl_image(train.as_ref(), 1, 101);

    let test = data::open(&spec, Split::Test).unwrap();
    assert_eq!(test.len(), 2);
    assert_eq!(test.label(1), Some(2));
    check_stl_image(test.as_ref(), 0, 200);

    // Past the end and a wrong buffer are errors, not panics.
    let mut out = vec![0u8; 96 * 96 * 3];
    assert!(test.read_into(2, &mut out).is_err());
    assert!(test.read_into(0, &mut out[1..]).is_err());
    assert_eq!(test.label(2), None);
}

#[test]
fn stl10_class_names_file_is_used() {
    let tmp = TempDir::new("stl-names");
    let dir = fake_stl(tmp.path());
    let names: Vec<String> = (0..10).map(|k| format!("thing{k}")).collect();
    write(&dir.join("class_names.txt"), names.join("\n").as_bytes());
    let train = data::open(&tmp.spec("stl10"), Split::Train).unwrap();
    assert_eq!(train.classes(), names);
}

#[test]
fn stl10_bad_files_are_named() {
    let tmp = TempDir::new("stl-bad");
    let dir = fake_stl(tmp.path());
    let spec = tmp.spec("stl10");

    // Truncated image file: expected vs actual size.
    let mut x = stl_images(100, 3);
    x.truncate(x.len() - 5);
    write(&dir.join("train_X.bin"), &x);
    let e = open_err(&spec, Split::Train);
    assert_names(&e, &["train_X.bin", "82939", "82944"]);
    write(&dir.join("train_X.bin"), &stl_images(100, 3));

    // Label out of 1..=10.
    write(&dir.join("train_y.bin"), &[1, 11, 5]);
    assert_names(&open_err(&spec, Split::Train), &["train_y.bin", "11"]);
    write(&dir.join("train_y.bin"), &[1, 0, 5]);
    assert_names(&open_err(&spec, Split::Train), &["train_y.bin", "label 0"]);

    // Count mismatch between images and labels.
    write(&dir.join("train_y.bin"), &[1, 2]);
    assert_names(
        &open_err(&spec, Split::Train),
        &["train_y.bin", "2 labels", "3 images"],
    );
    write(&dir.join("train_y.bin"), &[1, 10, 5]);

    // Missing files.
    std::fs::remove_file(dir.join("unlabeled_X.bin")).unwrap();
    assert_names(
        &open_err(&spec, Split::Pretrain),
        &["unlabeled_X.bin", "missing"],
    );
    assert!(data::open(&spec, Split::Train).is_ok());
    std::fs::remove_file(dir.join("test_y.bin")).unwrap();
    assert_names(&open_err(&spec, Split::Test), &["test_y.bin", "missing"]);
}

// ---------------------------------------------------------------- CIFAR-10

fn cifar_value(rec: usize, c: usize, y: usize, x: usize) -> u8 {
    ((rec * 13 + c * 50 + y * 7 + x * 3) % 253) as u8
}

/// Records `first..first+count`, label `rec % 10`, planes R, G, B each row-major.
fn cifar_batch(first: usize, count: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for rec in first..first + count {
        bytes.push((rec % 10) as u8);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    bytes.push(cifar_value(rec, c, y, x));
                }
            }
        }
    }
    bytes
}

const CIFAR_COUNTS: [usize; 5] = [2, 1, 3, 1, 2];

fn fake_cifar(root: &Path) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    let mut first = 0;
    for (k, &count) in CIFAR_COUNTS.iter().enumerate() {
        write(
            &dir.join(format!("data_batch_{}.bin", k + 1)),
            &cifar_batch(first, count),
        );
        first += count;
    }
    write(&dir.join("test_batch.bin"), &cifar_batch(500, 3));
    dir
}

fn check_cifar_image(set: &dyn ImageSet, i: usize, rec: usize) {
    let out = read(set, i);
    for y in 0..32 {
        for x in 0..32 {
            for c in 0..3 {
                assert_eq!(
                    out[(y * 32 + x) * 3 + c],
                    cifar_value(rec, c, y, x),
                    "image {i} pixel x={x} y={y} c={c}"
                );
            }
        }
    }
    assert_eq!(set.label(i), Some((rec % 10) as u32));
}

#[test]
fn cifar10_reads_batches_in_order() {
    let tmp = TempDir::new("cifar");
    let dir = fake_cifar(tmp.path());
    for split in [Split::Pretrain, Split::Train] {
        let train = data::open(&tmp.spec("cifar10"), split).unwrap();
        assert_eq!(train.len(), 9);
        assert_eq!(train.image_size(), (32, 32));
        assert_eq!(train.classes()[1], "automobile");
        for i in 0..9 {
            check_cifar_image(train.as_ref(), i, i);
        }
    }
    let test = data::open(&format!("cifar10:{}", dir.display()), Split::Test).unwrap();
    assert_eq!(test.len(), 3);
    for i in 0..3 {
        check_cifar_image(test.as_ref(), i, 500 + i);
    }
    write(
        &dir.join("batches.meta.txt"),
        b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n",
    );
    let named = data::open(&tmp.spec("cifar10"), Split::Test).unwrap();
    assert_eq!(named.classes().len(), 10);
    assert_eq!(named.classes()[9], "j");
}

#[test]
fn cifar10_bad_files_are_named() {
    let tmp = TempDir::new("cifar-bad");
    let dir = fake_cifar(tmp.path());
    let spec = tmp.spec("cifar10");

    let mut batch = cifar_batch(3, 3);
    batch.truncate(3073 * 2 + 100);
    write(&dir.join("data_batch_3.bin"), &batch);
    assert_names(
        &open_err(&spec, Split::Train),
        &["data_batch_3.bin", "6246", "6146", "9219"],
    );
    write(&dir.join("data_batch_3.bin"), &cifar_batch(3, 3));

    let mut test = cifar_batch(500, 3);
    test[3073] = 10;
    write(&dir.join("test_batch.bin"), &test);
    assert_names(
        &open_err(&spec, Split::Test),
        &["test_batch.bin", "label 10", "record 1"],
    );

    std::fs::remove_file(dir.join("data_batch_5.bin")).unwrap();
    assert_names(
        &open_err(&spec, Split::Pretrain),
        &["data_batch_5.bin", "missing"],
    );
}

// ---------------------------------------------------------------- IDX

const ROWS: usize = 5;
const COLS: usize = 4;

fn idx_value(img: usize, r: usize, c: usize) -> u8 {
    (img * 40 + r * 7 + c) as u8
}

fn idx_images(first: usize, count: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0x0803u32.to_be_bytes());
    for d in [count, ROWS, COLS] {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for img in first..first + count {
        for r in 0..ROWS {
            for c in 0..COLS {
                bytes.push(idx_value(img, r, c));
            }
        }
    }
    bytes
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0x0801u32.to_be_bytes());
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Train files gzipped, test files plain: both forms are read.
fn fake_idx(dir: &Path) {
    write(
        &dir.join("train-images-idx3-ubyte.gz"),
        &gzip(&idx_images(0, 3)),
    );
    write(
        &dir.join("train-labels-idx1-ubyte.gz"),
        &gzip(&idx_labels(&[7, 0, 9])),
    );
    write(&dir.join("t10k-images-idx3-ubyte"), &idx_images(3, 2));
    write(&dir.join("t10k-labels-idx1-ubyte"), &idx_labels(&[4, 2]));
}

fn check_idx_image(set: &dyn ImageSet, i: usize, img: usize) {
    let out = read(set, i);
    for r in 0..ROWS {
        for c in 0..COLS {
            let v = idx_value(img, r, c);
            assert_eq!(&out[(r * COLS + c) * 3..][..3], &[v, v, v], "image {i}");
        }
    }
}

#[test]
fn idx_reads_plain_and_gzipped_files() {
    let tmp = TempDir::new("idx");
    fake_idx(tmp.path());
    let train = data::open(&tmp.spec("idx"), Split::Train).unwrap();
    assert_eq!(train.len(), 3);
    assert_eq!(train.image_size(), (ROWS, COLS));
    assert_eq!(train.classes()[7], "7");
    assert_eq!(
        (0..3).map(|i| train.label(i)).collect::<Vec<_>>(),
        [Some(7), Some(0), Some(9)]
    );
    for i in 0..3 {
        check_idx_image(train.as_ref(), i, i);
    }
    let test = data::open(&tmp.spec("fashion-mnist"), Split::Test).unwrap();
    assert_eq!(test.len(), 2);
    assert_eq!(test.classes()[0], "T-shirt/top");
    assert_eq!(test.classes()[9], "Ankle boot");
    assert_eq!(test.label(0), Some(4));
    check_idx_image(test.as_ref(), 1, 4);
    let mnist = data::open(&tmp.spec("mnist"), Split::Pretrain).unwrap();
    assert_eq!(mnist.len(), 3);
}

#[test]
fn idx_bad_files_are_named() {
    let tmp = TempDir::new("idx-bad");
    let dir = tmp.path();
    fake_idx(dir);
    let spec = tmp.spec("idx");
    let images = dir.join("t10k-images-idx3-ubyte");
    let labels = dir.join("t10k-labels-idx1-ubyte");

    // Wrong magic: a label file where the images should be.
    write(&images, &idx_labels(&[1, 2]));
    assert_names(
        &open_err(&spec, Split::Test),
        &[
            "t10k-images-idx3-ubyte",
            "magic",
            "0x00000801",
            "0x00000803",
        ],
    );
    // Truncated: expected vs actual size.
    let mut short = idx_images(3, 2);
    short.pop();
    write(&images, &short);
    assert_names(
        &open_err(&spec, Split::Test),
        &["t10k-images-idx3-ubyte", "56", "55"],
    );
    write(&images, &idx_images(3, 2));
    // Count mismatch.
    write(&labels, &idx_labels(&[1, 2, 3]));
    assert_names(
        &open_err(&spec, Split::Test),
        &["t10k-labels-idx1-ubyte", "3 labels", "2 images"],
    );
    // Label out of range.
    write(&labels, &idx_labels(&[1, 10]));
    assert_names(
        &open_err(&spec, Split::Test),
        &["t10k-labels-idx1-ubyte", "label 10"],
    );
    // A corrupt gzip file.
    let mut gz = gzip(&idx_labels(&[7, 0, 9]));
    gz.truncate(gz.len() / 2);
    write(&dir.join("train-labels-idx1-ubyte.gz"), &gz);
    assert_names(
        &open_err(&spec, Split::Train),
        &["train-labels-idx1-ubyte.gz"],
    );
    // Missing.
    std::fs::remove_file(&labels).unwrap();
    assert_names(
        &open_err(&spec, Split::Test),
        &["t10k-labels-idx1-ubyte", "missing"],
    );
}

// ---------------------------------------------------------------- image folder

fn save(path: &Path, img: &image::RgbImage, format: image::ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, format).unwrap();
}

#[test]
fn folder_reads_classes_in_sorted_order_and_resizes() {
    let tmp = TempDir::new("folder");
    let dir = tmp.path();
    let exact = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8, y as u8, 200]));
    save(&dir.join("b_dog/z.png"), &exact, image::ImageFormat::Png);
    let flat = image::RgbImage::from_pixel(13, 7, image::Rgb([10, 120, 240]));
    save(&dir.join("b_dog/a.bmp"), &flat, image::ImageFormat::Bmp);
    save(&dir.join("a_cat/x.jpg"), &flat, image::ImageFormat::Jpeg);
    write(&dir.join("a_cat/notes.txt"), b"not an image");
    write(&dir.join("README"), b"ignored");

    let set = data::open(&format!("folder:{}:8", dir.display()), Split::Train).unwrap();
    assert_eq!(set.classes(), ["a_cat", "b_dog"]);
    assert_eq!(set.len(), 3);
    assert_eq!(set.image_size(), (8, 8));
    assert_eq!(
        (0..3).map(|i| set.label(i)).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(1)]
    );
    // Already the right size: copied exactly, row-major RGB.
    assert_eq!(read(set.as_ref(), 2), exact.as_raw().as_slice());
    // A flat colour stays flat through the bilinear resize (BMP is lossless).
    let bmp = read(set.as_ref(), 1);
    assert!(bmp.chunks(3).all(|p| p == [10, 120, 240]));
    // JPEG is lossy: close to the colour.
    let jpg = read(set.as_ref(), 0);
    assert!(jpg.chunks(3).all(|p| p
        .iter()
        .zip([10, 120, 240])
        .all(|(&a, b)| a.abs_diff(b) <= 8)));

    let default = data::open(&tmp.spec("folder"), Split::Test).unwrap();
    assert_eq!(default.image_size(), (96, 96));
    assert_eq!(read(default.as_ref(), 1).len(), 96 * 96 * 3);

    // A corrupt image fails when read, naming the file.
    write(&dir.join("b_dog/broken.png"), b"\x89PNG not really");
    let set = data::open(&tmp.spec("folder"), Split::Train).unwrap();
    let mut out = vec![0u8; 96 * 96 * 3];
    let e = set.read_into(2, &mut out).unwrap_err().to_string();
    assert_names(&e, &["broken.png"]);
}

#[test]
fn folder_errors_name_the_folder() {
    let tmp = TempDir::new("folder-bad");
    let missing = tmp.path().join("nope");
    let e = open_err(&format!("folder:{}", missing.display()), Split::Train);
    assert_names(&e, &["nope", "missing"]);
    std::fs::create_dir_all(tmp.path().join("empty_class")).unwrap();
    assert_names(&open_err(&tmp.spec("folder"), Split::Train), &["no images"]);
}

/// Files read whole are bounded by their format before a byte is allocated: a sparse 3 GiB
/// CIFAR batch, STL-10 label file or class-name list is refused at once, naming the file.
#[test]
fn oversized_whole_files_are_refused_before_reading() {
    let sparse = |path: &Path, len: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    };
    let tmp = TempDir::new("cifar-huge");
    let dir = fake_cifar(tmp.path());
    sparse(&dir.join("test_batch.bin"), 3 << 30);
    let e = open_err(&tmp.spec("cifar10"), Split::Test);
    assert_names(&e, &["test_batch.bin", "at most 30730000"]);
    let tmp2 = TempDir::new("cifar-names");
    let dir = fake_cifar(tmp2.path());
    sparse(&dir.join("batches.meta.txt"), 3 << 30);
    assert_names(
        &open_err(&tmp2.spec("cifar10"), Split::Test),
        &["batches.meta.txt", "class names"],
    );

    let tmp = TempDir::new("stl-huge");
    let dir = fake_stl(tmp.path());
    sparse(&dir.join("test_y.bin"), 3 << 30);
    let e = open_err(&tmp.spec("stl10"), Split::Test);
    assert_names(&e, &["test_y.bin", "at most 2"]);
}

// ---------------------------------------------------------------- synthetic

#[test]
fn synthetic_is_deterministic_in_any_read_order() {
    let a = data::open("synthetic", Split::Train).unwrap();
    let b = data::open("synthetic", Split::Train).unwrap();
    let pretrain = data::open("synthetic", Split::Pretrain).unwrap();
    assert_eq!(a.len(), 10_000);
    assert_eq!(a.image_size(), (32, 32));
    assert_eq!(a.classes().len(), 10);
    let order_a = [5usize, 0, 9_999, 123];
    let first: Vec<Vec<u8>> = order_a.iter().map(|&i| read(a.as_ref(), i)).collect();
    for (k, &i) in order_a.iter().enumerate().rev() {
        assert_eq!(read(b.as_ref(), i), first[k], "image {i}");
        assert_eq!(read(pretrain.as_ref(), i), first[k], "pretrain image {i}");
        assert_eq!(a.label(i), Some((i % 10) as u32));
    }
    // Threads read the same bytes as a single reader.
    let shared: &dyn ImageSet = b.as_ref();
    let threads: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = order_a
            .iter()
            .map(|&i| s.spawn(move || read(shared, i)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(threads, first);

    let test = data::open("synthetic", Split::Test).unwrap();
    assert_eq!(test.len(), 2_000);
    assert_ne!(read(test.as_ref(), 5), first[0]);
    let seeded = data::open("synthetic:10000:32:7", Split::Train).unwrap();
    assert_ne!(read(seeded.as_ref(), 5), first[0]);
    let big = data::open("synthetic:50:64", Split::Test).unwrap();
    assert_eq!((big.len(), big.image_size()), (10, (64, 64)));
    assert!(a.read_into(10_000, &mut vec![0u8; 32 * 32 * 3]).is_err());
}

/// Classes are balanced, differ image by image, and differ in a colour-free statistic: textured
/// classes have more edges on average than solid ones.
#[test]
fn synthetic_classes_differ() {
    let set = data::open("synthetic:2000:24", Split::Train).unwrap();
    let (h, w) = set.image_size();
    // Classes are balanced.
    let mut counts = [0usize; 10];
    for i in 0..set.len() {
        counts[set.label(i).unwrap() as usize] += 1;
    }
    assert_eq!(counts, [200; 10]);
    // Every image of class k differs from the same-position image of every other class.
    for k in 0..10 {
        let a = read(set.as_ref(), k);
        for j in (0..10).filter(|&j| j != k) {
            assert_ne!(a, read(set.as_ref(), j));
        }
    }
    // Each class has its own mean edge density: mean |horizontal gradient| over 100 images.
    let mut edge = [0f64; 10];
    for i in 0..1000 {
        let img = read(set.as_ref(), i);
        let mut e = 0u64;
        for y in 0..h {
            for x in 1..w {
                for c in 0..3 {
                    let p = img[(y * w + x) * 3 + c] as i32;
                    let q = img[(y * w + x - 1) * 3 + c] as i32;
                    e += (p - q).unsigned_abs() as u64;
                }
            }
        }
        edge[i % 10] += e as f64 / 100.0;
    }
    // Textured classes (striped, checkered, dotted) have more edges than solid ones (disc,
    // square).
    for textured in [6, 7, 9] {
        for solid in [0, 1] {
            assert!(
                edge[textured] > edge[solid] * 1.15,
                "class {textured} edges {} vs class {solid} {}",
                edge[textured],
                edge[solid]
            );
        }
    }
}

/// The shape's and the ground's grey levels are the same in every image, so that no colour tells
/// one image from another: two views of an image then share only what the augmentations keep,
/// position-free shape and texture, which is the class. (With per-image colours, BYOL learns the
/// colours and stays at chance: see src/data/synthetic.rs.)
#[test]
fn synthetic_grey_levels_carry_no_image_identity() {
    let set = data::open("synthetic:400:32", Split::Train).unwrap();
    let (h, w) = set.image_size();
    let mut highs = Vec::new();
    let mut lows = Vec::new();
    for i in 0..set.len() {
        let img = read(set.as_ref(), i);
        let mut lum: Vec<f64> = img
            .chunks(3)
            .map(|p| {
                // Grey: the three channels agree (up to pixel noise).
                let spread = p.iter().max().unwrap() - p.iter().min().unwrap();
                assert!(spread <= 30, "image {i}: pixel {p:?} is not grey");
                p.iter().map(|&c| c as f64).sum::<f64>() / 3.0 / 255.0
            })
            .collect();
        assert_eq!(lum.len(), h * w);
        lum.sort_by(f64::total_cmp);
        // The brightest 2% lie on the shape (the light part of every class covers more), the darkest 5%
        // on the ground.
        highs.push(lum[lum.len() * 98 / 100]);
        lows.push(lum[lum.len() * 5 / 100]);
    }
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        let (lo, hi) = v
            .iter()
            .fold((1f64, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        (mean, sd, lo, hi)
    };
    let (mean, sd, lo, hi) = stats(&highs);
    assert!(
        (0.84..=0.96).contains(&mean) && sd < 0.05,
        "shape grey {mean} ± {sd}"
    );
    assert!(lo > 0.7 && hi < 0.98, "shape grey from {lo} to {hi}");
    let (mean, sd, lo, hi) = stats(&lows);
    assert!(mean < 0.2 && sd < 0.04, "ground grey {mean} ± {sd}");
    assert!(hi < 0.3, "ground grey from {lo} to {hi}");
}

// ---------------------------------------------------------------- specs and stats

#[test]
fn bad_specs_list_the_valid_forms() {
    assert_names(
        &open_err("imagenet:/x", Split::Train),
        &[
            "imagenet",
            "synthetic",
            "stl10:DIR",
            "cifar10:DIR",
            "folder:DIR",
        ],
    );
    assert_names(&open_err("stl10", Split::Train), &["stl10:DIR"]);
    assert_names(&open_err("synthetic:many", Split::Train), &["many"]);
    assert!(data::open("synthetic:0", Split::Train).is_err());
    assert!(data::open("synthetic:10:2", Split::Train).is_err());
    assert!(data::open("synthetic:1:32:0:9", Split::Train).is_err());
}

#[test]
fn channel_stats_are_exact_on_known_pixels() {
    let tmp = TempDir::new("stats");
    // Two images: every pixel 0 in the first, 255 in the second -> mean 0.5, std 0.5.
    let mut bytes = idx_images(0, 2);
    let body = ROWS * COLS;
    bytes[16..16 + body].fill(0);
    bytes[16 + body..].fill(255);
    write(&tmp.path().join("train-images-idx3-ubyte"), &bytes);
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &idx_labels(&[0, 1]),
    );
    let set = data::open(&tmp.spec("idx"), Split::Train).unwrap();
    let stats = byol::cli::data::channel_stats(set.as_ref(), 10_000).unwrap();
    assert_eq!(stats.images, 2);
    for c in 0..3 {
        assert!((stats.mean[c] - 0.5).abs() < 1e-12);
        assert!((stats.std[c] - 0.5).abs() < 1e-12);
    }
    let one = byol::cli::data::channel_stats(set.as_ref(), 1).unwrap();
    assert_eq!((one.images, one.mean[0], one.std[0]), (1, 0.0, 0.0));
}

// ---------------------------------------------------------------- real data

const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn debian_fashion_mnist_reads_with_balanced_labels() {
    assert!(
        Path::new(FASHION_DIR).is_dir(),
        "{FASHION_DIR} is missing: install Fashion-MNIST with \
         `apt-get install dataset-fashion-mnist` (Debian's package of the IDX files)"
    );
    let spec = format!("fashion-mnist:{FASHION_DIR}");
    for (split, count) in [(Split::Train, 60_000), (Split::Test, 10_000)] {
        let set = data::open(&spec, split).unwrap();
        assert_eq!(set.len(), count);
        assert_eq!(set.image_size(), (28, 28));
        assert_eq!(set.classes()[9], "Ankle boot");
        let mut histogram = [0usize; 10];
        for i in 0..set.len() {
            histogram[set.label(i).unwrap() as usize] += 1;
        }
        assert_eq!(histogram, [count / 10; 10], "{split:?}");
        // Real images: grayscale replicated, not blank.
        let img = read(set.as_ref(), 0);
        assert!(img.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert!(img.iter().any(|&v| v > 100));
    }
}

#[test]
fn cli_info_prints_counts_shape_classes_and_stats() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_byol"))
        .args(["data", "info", "--dataset", "synthetic:200:16"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for part in [
        "pretrain",
        "200 images",
        "test",
        "40 images",
        "16x16x3",
        "disc",
        "over 200 evenly",
        "mean",
        "std",
    ] {
        assert!(stdout.contains(part), "missing {part:?} in:\n{stdout}");
    }
}
