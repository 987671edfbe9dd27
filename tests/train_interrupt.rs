//! A run stopped mid-epoch (by a stop request, and by a real SIGINT to `byol train`) saves a
//! checkpoint there, and resuming it reaches the same metrics, bit for bit, as a run never
//! stopped; metrics and checkpoint stay in agreement; a second signal never breaks a checkpoint.

mod common;
use byol::train::{train, train_with, EpochMetrics, RunControl, TrainConfig};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// 8 steps per epoch over 2 epochs, probe off: small enough for a debug build.
fn tiny() -> TrainConfig {
    TrainConfig {
        dataset: "synthetic:128:16".into(),
        image_size: 16,
        width_mult: 0.125,
        proj_hidden: 32,
        proj_out: 16,
        pred_hidden: 32,
        batch_size: 16,
        epochs: 2,
        eval_every: 0,
        log_every: 1,
        ..TrainConfig::default()
    }
}

fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("byol-interrupt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// What must not differ between a resumed run and an uninterrupted one (timings may).
fn trained(m: &EpochMetrics) -> (usize, usize, f64, f64, f64, f64, f64, f64, f64) {
    (
        m.epoch,
        m.step,
        m.loss,
        m.lr,
        m.tau,
        m.cos_pos,
        m.cos_neg,
        m.output_std,
        m.output_rank,
    )
}

fn metrics_file(dir: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| v[k].as_f64().unwrap();
            EpochMetrics {
                epoch: f("epoch") as usize,
                step: f("step") as usize,
                loss: f("loss"),
                lr: f("lr"),
                tau: f("tau"),
                cos_pos: f("cos_pos"),
                cos_neg: f("cos_neg"),
                output_std: f("output_std"),
                output_std_reference: f("output_std_reference"),
                output_rank: f("output_rank"),
                linear_accuracy: None,
                linear_accuracy_se: None,
                knn_accuracy: None,
                knn_accuracy_se: None,
                embedding_rank: None,
                random_accuracy: None,
                chance_accuracy: None,
                images_per_sec: 0.0,
                seconds: 0.0,
                collapsed: v["collapsed"].as_bool().unwrap(),
            }
        })
        .collect()
}

#[test]
fn a_run_stopped_mid_epoch_resumes_to_the_uninterrupted_metrics() {
    let e = common::engine();
    let cfg = tiny();
    let straight = run_dir("straight");
    train(&e, &cfg, &straight, false, false).unwrap();
    let want = metrics_file(&straight);
    // Stops at step 3 of epoch 1, and again at step 3 of epoch 2 (11 steps in all).
    let split = run_dir("split");
    for (resume, stop_at) in [(false, 3), (true, 11)] {
        let ctl = RunControl {
            stop_after_steps: Some(stop_at),
            ..RunControl::default()
        };
        let err = train_with(&e, &cfg, &split, resume, &ctl).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
    }
    train(&e, &cfg, &split, true, false).unwrap();
    let got = metrics_file(&split);
    assert_eq!(
        got.iter().map(trained).collect::<Vec<_>>(),
        want.iter().map(trained).collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&straight).ok();
    std::fs::remove_dir_all(&split).ok();
}

/// The CLI measures kernels at its first step: the runs of this file share one tune cache, so the
/// uninterrupted run and the interrupted one take the same kernels (the resumed one takes its
/// run's `kernels.json`).
fn tune_cache() -> PathBuf {
    std::env::temp_dir().join(format!("byol-interrupt-tune-{}.json", std::process::id()))
}

fn byol_train(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_byol"));
    c.env("BYOL_TUNE_CACHE", tune_cache());
    c.args([
        "train",
        "--dataset",
        "synthetic:128:16",
        "--image-size",
        "16",
        "--width-mult",
        "0.125",
        "--proj-hidden",
        "32",
        "--proj-out",
        "16",
        "--pred-hidden",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--eval-every",
        "0",
        "--log-every",
        "1",
    ]);
    c.arg("--out").arg(dir).args(extra);
    c
}

#[test]
fn sigint_saves_a_checkpoint_and_resume_matches_the_uninterrupted_run() {
    let straight = run_dir("cli-straight");
    let ok = byol_train(&straight, &[]).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let split = run_dir("cli-split");
    let mut child = byol_train(&split, &[])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    let mut sent = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        // The progress line comes from the first step; interrupt in the middle of epoch 1.
        if !sent && line.contains("epoch 1/2 step 3/8") {
            let kill = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            sent = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(sent, "no progress line to interrupt at:\n{text}");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("continue with --resume"), "{text}");
    assert!(split.join("checkpoint.bin").exists(), "{text}");
    assert!(
        !split.join("metrics.jsonl").exists(),
        "no epoch ended, so no metrics line: {text}"
    );

    let resumed = Command::new(env!("CARGO_BIN_EXE_byol"))
        .env(
            "BYOL_TUNE_CACHE",
            tune_cache().with_extension("resumed.json"),
        )
        .args(["train", "--resume"])
        .arg(&split)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        metrics_file(&split).iter().map(trained).collect::<Vec<_>>(),
        metrics_file(&straight)
            .iter()
            .map(trained)
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&straight).ok();
    std::fs::remove_dir_all(&split).ok();
    std::fs::remove_file(tune_cache()).ok();
    std::fs::remove_file(tune_cache().with_extension("resumed.json")).ok();
}

/// A kill between the epoch's checkpoint and its metrics line, or a line left behind by a run
/// that died before its checkpoint, must not give a resumed run duplicate or missing epochs.
#[test]
fn resume_keeps_metrics_and_checkpoint_in_agreement() {
    let e = common::engine();
    let cfg = tiny();
    let dir = run_dir("agree");
    byol::train::train_until(&e, &cfg, &dir, false, false, Some(1)).unwrap();
    // A stale line for epoch 2 (its checkpoint was never written).
    let path = dir.join("metrics.jsonl");
    let first = std::fs::read_to_string(&path).unwrap();
    let stale = first.replace("\"epoch\":1", "\"epoch\":2");
    std::fs::write(&path, format!("{first}{stale}")).unwrap();
    train(&e, &cfg, &dir, true, false).unwrap();
    let epochs: Vec<usize> = metrics_file(&dir).iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, [1, 2]);
    std::fs::remove_dir_all(&dir).ok();
}
