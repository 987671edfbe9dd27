//! Image folders: one class mapping for the whole dataset (the sorted union of the splits'
//! classes, so a class missing from one split does not shift the others), decoding limits that
//! refuse a small file claiming a huge image before it is decoded, and truncated JPEGs refused.

use byol::data::folder;
use byol::data::{ImageSet, Split};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("byol-folder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn png(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn splits_share_one_class_mapping_even_when_a_class_is_missing() {
    let dir = scratch("classes");
    png(&dir.join("train/cat/a.png"), [200, 0, 0]);
    png(&dir.join("train/fox/a.png"), [0, 0, 200]);
    png(&dir.join("test/cat/a.png"), [200, 0, 0]);
    png(&dir.join("test/dog/a.png"), [0, 200, 0]);
    png(&dir.join("test/fox/a.png"), [0, 0, 200]);
    let train = folder::open(&dir, Split::Train, 8).unwrap();
    let test = folder::open(&dir, Split::Test, 8).unwrap();
    assert_eq!(train.classes(), ["cat", "dog", "fox"]);
    assert_eq!(test.classes(), train.classes());
    // fox is class 2 in both splits (train has no dog: ids are not renumbered).
    let label_of = |set: &dyn ImageSet, class: &str| {
        let id = set.classes().iter().position(|c| c == class).unwrap() as u32;
        (0..set.len())
            .find(|&i| set.label(i) == Some(id))
            .map(|_| id)
    };
    assert_eq!(label_of(&train, "fox"), Some(2));
    assert_eq!(label_of(&test, "fox"), Some(2));
    assert_eq!(label_of(&train, "dog"), None);
    std::fs::remove_dir_all(&dir).ok();
}

/// A PNG whose header claims `w` x `h` pixels (the data after it is not needed to be refused).
fn png_claiming(path: &Path, w: u32, h: u32) {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(13u32.to_be_bytes());
    file.extend(&ihdr);
    file.extend(crc32fast::hash(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    file.extend(((idat.len() - 4) as u32).to_be_bytes());
    file.extend(idat);
    file.extend(crc32fast::hash(idat).to_be_bytes());
    file.extend(0u32.to_be_bytes());
    file.extend(b"IEND");
    file.extend(crc32fast::hash(b"IEND").to_be_bytes());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, file).unwrap();
}

#[test]
fn a_small_file_claiming_a_huge_image_is_refused_quickly() {
    let dir = scratch("huge");
    png_claiming(&dir.join("big/huge.png"), 20_000, 20_000);
    let set = folder::open(&dir, Split::Train, 8).unwrap();
    let t0 = std::time::Instant::now();
    let err = set
        .read_into(0, &mut [0u8; 8 * 8 * 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("huge.png") && err.contains("8192"), "{err}");
    assert!(t0.elapsed().as_secs() < 5, "it decoded first");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncated_jpegs_are_refused() {
    let dir = scratch("jpeg");
    let path = dir.join("c/whole.jpg");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 90])
    });
    img.save(&path).unwrap();
    let whole = std::fs::read(&path).unwrap();
    let set = folder::open(&dir, Split::Train, 32).unwrap();
    set.read_into(0, &mut vec![0u8; 32 * 32 * 3]).unwrap();
    // Every cut short of the end is refused, naming the file.
    for cut in [whole.len() / 4, whole.len() / 2, whole.len() - 3] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let err = set
            .read_into(0, &mut vec![0u8; 32 * 32 * 3])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("whole.jpg") && err.contains("truncated"),
            "cut {cut}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A synthetic count no run could use is refused at once instead of a `data info` that never ends.
#[test]
fn absurd_synthetic_counts_are_refused() {
    let t0 = std::time::Instant::now();
    for spec in [
        "synthetic:18446744073709551615",
        "synthetic:0",
        "synthetic:10000001",
    ] {
        let err = byol::data::open(spec, Split::Pretrain)
            .err()
            .expect(spec)
            .to_string();
        assert!(err.contains("count"), "{spec}: {err}");
    }
    byol::data::open("synthetic:10000000", Split::Pretrain).unwrap();
    assert!(t0.elapsed().as_secs() < 5);
}

/// IDX files: the header is read and checked first, so a small `.gz` claiming a huge image count
/// or hiding far more data than its header says is refused without inflating it whole, a plain
/// file must be exactly what its header says, and a pipe or a link to a device is named as such
/// (not as missing, and never waited on).
mod idx_faults {
    use byol::data::Split;
    use std::io::Write;
    use std::path::Path;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn fake(dir: &Path, images: Vec<u8>, gz: bool) {
        std::fs::create_dir_all(dir).unwrap();
        let name = if gz {
            "t10k-images-idx3-ubyte.gz"
        } else {
            "t10k-images-idx3-ubyte"
        };
        let images = if gz { gzip(&images) } else { images };
        std::fs::write(dir.join(name), images).unwrap();
        let mut labels = header(0x0801, &[1]);
        labels.push(3);
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    }

    fn open_err(dir: &Path) -> String {
        let spec = format!("idx:{}", dir.display());
        match byol::data::open(&spec, Split::Test) {
            Ok(_) => panic!("{spec} opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn headers_are_checked_before_data_is_inflated_or_allocated() {
        let root = super::scratch("idx");
        // One image of 28x28 claimed, 64 MiB of zeros behind it (a ~64 KB gzip file).
        let mut lying = header(0x0803, &[1, 28, 28]);
        lying.resize(16 + (64 << 20), 0);
        fake(&root.join("more"), lying, true);
        let t0 = std::time::Instant::now();
        let err = open_err(&root.join("more"));
        assert!(err.contains("more") && err.contains("t10k-images"), "{err}");
        assert!(
            t0.elapsed().as_secs() < 5,
            "it inflated the whole file first"
        );
        // 2^31 images claimed by a file of a few dozen bytes.
        let mut huge = header(0x0803, &[1 << 31, 28, 28]);
        huge.extend([0u8; 784]);
        fake(&root.join("huge-gz"), huge.clone(), true);
        let err = open_err(&root.join("huge-gz"));
        assert!(err.contains("gzip file can hold"), "{err}");
        fake(&root.join("huge-plain"), huge, false);
        let err = open_err(&root.join("huge-plain"));
        assert!(err.contains("expected") && err.contains("got 800"), "{err}");
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_pipe_or_a_device_is_named_not_missing() {
        let root = super::scratch("idx-special");
        let mut ok = header(0x0803, &[1, 2, 2]);
        ok.extend([1, 2, 3, 4]);
        fake(&root, ok, false);
        let images = root.join("t10k-images-idx3-ubyte");
        std::fs::remove_file(&images).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &images).unwrap();
        let err = open_err(&root);
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_file(&images).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&images)
            .status()
            .unwrap();
        assert!(made.success());
        let t0 = std::time::Instant::now();
        let err = open_err(&root);
        assert!(err.contains("not a regular file"), "{err}");
        assert!(t0.elapsed().as_secs() < 5, "it waited on the pipe");
        std::fs::remove_dir_all(&root).ok();
    }
}
