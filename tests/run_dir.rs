//! A run owns its directory: runs started in the same second get different directories, `--out`
//! never writes into a directory that holds anything (a run or other files, which stay untouched),
//! and a directory another run is training in is refused while its lock is held.

mod common;
use byol::train::run_dir::{claim_fresh, lock, new_run_dir};
use byol::train::{train, TrainConfig};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("byol-rundir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn runs_started_in_the_same_second_get_their_own_directories() {
    let root = scratch("same-second");
    let dirs: Vec<PathBuf> = (0..3)
        .map(|_| new_run_dir(&root, "byol-synthetic").unwrap())
        .collect();
    assert!(dirs[0] != dirs[1] && dirs[1] != dirs[2] && dirs[0] != dirs[2]);
    for d in &dirs {
        assert!(d.is_dir());
        let name = d.file_name().unwrap().to_str().unwrap();
        // A readable UTC time, not Unix seconds: byol-synthetic-YYYYMMDD-HHMMSS[-N].
        let stamp = &name["byol-synthetic-".len()..];
        assert!(stamp.len() >= 15 && stamp.as_bytes()[8] == b'-', "{name}");
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn out_refuses_a_directory_that_holds_anything_and_touches_nothing() {
    let run = scratch("holds-run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.json"), "{\"mine\": true}").unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{\"epoch\":1}\n").unwrap();
    let err = claim_fresh(&run).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("config.json")).unwrap(),
        "{\"mine\": true}"
    );
    assert!(run.join("metrics.jsonl").exists());

    let other = scratch("holds-files");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let err = claim_fresh(&other).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );

    let empty = scratch("empty");
    std::fs::create_dir_all(&empty).unwrap();
    claim_fresh(&empty).unwrap();
    let fresh = scratch("fresh").join("nested");
    claim_fresh(&fresh).unwrap();
    assert!(fresh.is_dir());
    for d in [run, other, empty, fresh.parent().unwrap().to_path_buf()] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn a_directory_another_run_holds_is_refused() {
    let dir = scratch("locked");
    std::fs::create_dir_all(&dir).unwrap();
    let held = lock(&dir).unwrap();
    let cfg = TrainConfig {
        dataset: "synthetic:64:16".into(),
        image_size: 16,
        width_mult: 0.125,
        batch_size: 16,
        epochs: 1,
        eval_every: 0,
        ..TrainConfig::default()
    };
    let err = train(&common::engine(), &cfg, &dir, false, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another byol run"), "{err}");
    assert!(
        !dir.join("config.json").exists(),
        "nothing written while locked"
    );
    drop(held);
    std::fs::remove_dir_all(&dir).ok();
}
