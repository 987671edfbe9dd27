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
