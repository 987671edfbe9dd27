//! Data-parallel training under `mpirun -np 2` (a build with `--features mpi`; CI installs Open
//! MPI and runs these on its one software adapter, which both ranks share).
//!
//! The claims: two ranks with `--sync-bn` at global batch 32 are the single process at batch 32
//! (loss, every parameter, momentum and running statistic, to 1e-5 after 3 steps); without it
//! they are not (each rank normalizes its own 16 images), and are instead the single process with
//! `--bn-groups 2` (ghost batch norm over each half) to the same 1e-5; ranks that disagree on the config, a
//! global batch that does not split, a resume with another number of ranks are clear errors; a
//! rank that dies takes the others down in bounded time instead of hanging them.
#![cfg(feature = "mpi")]

use byol::train::checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A small BYOL run: 3 steps of batch 32 at 16 px, no evaluation, untuned kernels (so both
/// processes run the same ones); `changes` replaces (or adds) flags.
fn run_args(changes: &[(&str, &str)]) -> Vec<String> {
    let base = [
        ("--dataset", "synthetic:256:16"),
        ("--image-size", "16"),
        ("--width-mult", "0.125"),
        ("--proj-hidden", "64"),
        ("--proj-out", "32"),
        ("--pred-hidden", "64"),
        ("--batch-size", "32"),
        ("--epochs", "1"),
        ("--max-steps-per-epoch", "3"),
        ("--eval-every", "0"),
        ("--checkpoint-minutes", "0"),
        ("--tune=off", ""),
        // A small step: at the default lr this tiny network amplifies f32 rounding so fast that
        // two backends of one process (GL and Vulkan) differ by 2e-5 in their parameters after 3
        // steps; at 0.002 they differ by 2e-6, and so do one process and two ranks.
        ("--lr", "0.002"),
        ("--no-lr-scale", ""),
    ];
    let mut args = vec!["train".to_string(), "--quiet".to_string()];
    for (flag, value) in base {
        let value = changes
            .iter()
            .find(|(f, _)| *f == flag)
            .map_or(value, |(_, v)| v);
        args.push(flag.to_string());
        if !value.is_empty() {
            args.push(value.to_string());
        }
    }
    for (flag, value) in changes {
        if !base.iter().any(|(f, _)| f == flag) {
            args.push(flag.to_string());
            if !value.is_empty() {
                args.push(value.to_string());
            }
        }
    }
    args
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("byol-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn byol_bin() -> &'static str {
    env!("CARGO_BIN_EXE_byol")
}

/// `mpirun` with what a container needs: root allowed, more ranks than cores, shared memory
/// without cross-process copies.
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe"])
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    c
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); is Open MPI installed (mpirun)?"));
    out
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn single(out: &Path, changes: &[(&str, &str)]) -> Output {
    let mut c = Command::new(byol_bin());
    c.args(run_args(changes)).arg("--out").arg(out);
    run(c, "byol train")
}

fn two_ranks(out: &Path, changes: &[(&str, &str)]) -> Output {
    let mut c = mpirun();
    c.args(["-np", "2", byol_bin()])
        .args(run_args(changes))
        .arg("--out")
        .arg(out);
    run(c, "mpirun -np 2 byol train")
}

fn epoch_loss(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    let line = text.lines().last().expect("a metrics line");
    let v: serde_json::Value = serde_json::from_str(line).expect("json");
    v["loss"].as_f64().expect("loss")
}

/// The largest relative difference ||a - b|| / ||a|| (Euclidean, per tensor) between two
/// checkpoints' tensors whose names `keep` accepts, and which tensor it is.
fn largest_difference(a: &Path, b: &Path, keep: impl Fn(&str) -> bool) -> (f64, String) {
    let (_, ta) = checkpoint::load(&a.join("checkpoint.bin")).expect("checkpoint a");
    let (_, tb) = checkpoint::load(&b.join("checkpoint.bin")).expect("checkpoint b");
    let names = |t: &checkpoint::NamedTensors| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&ta),
        names(&tb),
        "the checkpoints hold different tensors"
    );
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        if !keep(name) {
            continue;
        }
        assert_eq!(x.len(), y.len(), "{name}");
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (p, q) in x.iter().zip(y) {
            diff += f64::from(p - q).powi(2);
            norm += f64::from(*p).powi(2);
        }
        let d = diff.sqrt() / norm.sqrt().max(1e-12);
        if d > worst.0 || d.is_nan() {
            worst = (d, name.clone());
        }
    }
    worst
}

/// Parameters (the arenas) and batch-norm running statistics: what a trained model is.
fn model_tensor(name: &str) -> bool {
    !name.starts_with("opt")
}

#[test]
fn sync_bn_on_two_ranks_is_the_single_process_and_per_rank_bn_is_not() {
    let one = scratch("one");
    let synced = scratch("synced");
    let per_rank = scratch("per-rank");
    let o = single(&one, &[]);
    assert!(o.status.success(), "single process: {}", text(&o));
    let o = two_ranks(&synced, &[("--sync-bn", "")]);
    assert!(o.status.success(), "two ranks, --sync-bn: {}", text(&o));
    let o = two_ranks(&per_rank, &[]);
    assert!(o.status.success(), "two ranks: {}", text(&o));

    let (loss1, loss2) = (epoch_loss(&one), epoch_loss(&synced));
    assert!(
        (loss1 - loss2).abs() <= 1e-5 * loss1.abs(),
        "loss {loss1} (one process) vs {loss2} (two ranks, --sync-bn)"
    );
    let (d, at) = largest_difference(&one, &synced, model_tensor);
    assert!(
        d <= 1e-5,
        "two ranks with --sync-bn differ from one process by {d:e} in {at}"
    );
    // Each rank normalizing its own half is a different model...
    let (d, at) = largest_difference(&one, &per_rank, model_tensor);
    eprintln!("per-rank batch norm against one process: {d:e} in {at}");
    assert!(
        d > 1e-4,
        "per-rank batch norm matched the global batch ({d:e} in {at})"
    );
    // ...and it is the single process that normalizes each half of the batch on its own.
    let ghost = scratch("ghost");
    let o = single(&ghost, &[("--bn-groups", "2")]);
    assert!(
        o.status.success(),
        "single process, --bn-groups 2: {}",
        text(&o)
    );
    let (loss1, loss2) = (epoch_loss(&ghost), epoch_loss(&per_rank));
    assert!(
        (loss1 - loss2).abs() <= 1e-5 * loss1.abs(),
        "loss {loss1} (one process, --bn-groups 2) vs {loss2} (two ranks)"
    );
    let (d, at) = largest_difference(&ghost, &per_rank, model_tensor);
    eprintln!("two ranks against one process with --bn-groups 2: {d:e} in {at}");
    assert!(
        d <= 1e-5,
        "two ranks differ from one process with --bn-groups 2 by {d:e} in {at}"
    );
    let _ = std::fs::remove_dir_all(ghost);
    // Only rank 0 wrote: one run directory, with its config saying 2 ranks.
    let cfg = std::fs::read_to_string(synced.join("config.json")).unwrap();
    assert!(cfg.contains("\"ranks\": 2"), "{cfg}");
    assert!(cfg.contains("\"sync_bn\": true"), "{cfg}");
    for d in [one, synced, per_rank] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn ranks_with_different_configs_are_refused() {
    let out = scratch("mismatch");
    let mut c = mpirun();
    c.args(["-np", "1", byol_bin()])
        .args(run_args(&[("--lr", "0.1")]))
        .arg("--out")
        .arg(&out)
        .args([":", "-np", "1", byol_bin()])
        .args(run_args(&[("--lr", "0.2")]))
        .arg("--out")
        .arg(&out);
    let o = run(c, "mpirun with two configs");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("different configuration"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_global_batch_that_does_not_split_is_refused() {
    let out = scratch("split");
    let mut c = mpirun();
    c.args(["-np", "2", byol_bin()])
        .args(run_args(&[("--batch-size", "33")]))
        .arg("--out")
        .arg(&out);
    let o = run(c, "mpirun -np 2 with batch 33");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("split evenly over the 2 ranks"),
        "{}",
        text(&o)
    );
    assert!(!out.exists(), "a refused run left {}", out.display());
}

#[test]
fn resume_needs_the_same_number_of_ranks() {
    let out = scratch("resume");
    let o = two_ranks(&out, &[("--sync-bn", "")]);
    assert!(o.status.success(), "{}", text(&o));
    let mut c = Command::new(byol_bin());
    c.args(["train", "--quiet", "--resume"])
        .arg(&out)
        .args(["--epochs", "2"]);
    let o = run(c, "single-process resume");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("trained on 2 rank(s)"),
        "{}",
        text(&o)
    );
    let mut c = mpirun();
    c.args(["-np", "2", byol_bin(), "train", "--quiet", "--resume"])
        .arg(&out)
        .args(["--epochs", "2"]);
    let o = run(c, "two-rank resume");
    assert!(o.status.success(), "{}", text(&o));
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_rank_that_dies_stops_the_others() {
    let out = scratch("dies");
    // Rank 1 is killed a few seconds in; rank 0 would otherwise train for many minutes.
    let long = run_args(&[("--max-steps-per-epoch", "100000"), ("--epochs", "1000")]);
    let mut c = mpirun();
    c.env("BYOL_MPI_TIMEOUT", "60")
        .args(["-np", "1", byol_bin()])
        .args(&long)
        .arg("--out")
        .arg(&out)
        .args([":", "-np", "1", "timeout", "-s", "KILL", "8", byol_bin()])
        .args(&long)
        .arg("--out")
        .arg(&out);
    let t0 = Instant::now();
    let o = run(c, "mpirun with a rank that dies");
    let took = t0.elapsed();
    eprintln!("the run stopped {took:?} after start:\n{}", text(&o));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        took < Duration::from_secs(120),
        "the surviving rank took {took:?} to stop"
    );
    let _ = std::fs::remove_dir_all(out);
}

/// `byol study --variants bn-global,bn-shards-2` in one process (batch norm over the batch, and
/// over each half by ghost batch norm) and under `mpirun -np 2` (sync-BN, and each rank's own
/// half): the same models, rank 0 alone writing the study directory.
#[test]
fn the_parallel_study_group_runs_under_mpirun_as_in_one_process() {
    let one = scratch("study-one");
    let two = scratch("study-two");
    let study = |out: &Path| -> Vec<String> {
        [
            "study",
            "--quiet",
            "--preset",
            "smoke",
            "--variants",
            "bn-global,bn-shards-2",
            "--set",
            "lr=0.002",
            "--set",
            "lr_scale=false",
            // 3 steps, as above: over more, this tiny network amplifies f32 rounding (one
            // process through GL and through Vulkan differ by 2e-4 in loss after 8 steps).
            "--epochs",
            "1",
            "--set",
            "max_steps_per_epoch=3",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_string_lossy().into_owned()])
        .collect()
    };
    let mut c = Command::new(byol_bin());
    c.args(study(&one)).arg("--tune=off");
    let o = run(c, "byol study");
    assert!(o.status.success(), "one process: {}", text(&o));
    let mut c = mpirun();
    c.args(["-np", "2", byol_bin()])
        .args(study(&two))
        .arg("--tune=off");
    let o = run(c, "mpirun -np 2 byol study");
    assert!(o.status.success(), "two ranks: {}", text(&o));
    assert!(two.join("results.json").exists() && two.join("table.md").exists());
    for (slug, sync) in [("bn-global", true), ("bn-shards-2", false)] {
        let (a, b) = (one.join("runs").join(slug), two.join("runs").join(slug));
        let (d, at) = largest_difference(&a, &b, model_tensor);
        eprintln!("{slug}: two ranks against one process: {d:e} in {at}");
        assert!(d <= 1e-5, "{slug}: two ranks differ by {d:e} in {at}");
        let cfg = std::fs::read_to_string(b.join("config.json")).unwrap();
        assert!(cfg.contains("\"ranks\": 2"), "{cfg}");
        assert!(cfg.contains(&format!("\"sync_bn\": {sync}")), "{cfg}");
        let cfg1 = std::fs::read_to_string(a.join("config.json")).unwrap();
        let groups = if sync { 1 } else { 2 };
        assert!(cfg1.contains(&format!("\"bn_groups\": {groups}")), "{cfg1}");
    }
    for d in [one, two] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A study whose variants diverge under `mpirun -np 2`: rank 0 sees the non-finite loss (it alone
/// prints), every rank stops at that step, the divergence is recorded and the study goes on to
/// the next variant in lockstep and finishes, instead of one rank waiting for the other forever.
#[test]
fn a_divergence_under_mpirun_stops_every_rank_and_the_study_goes_on() {
    let out = scratch("study-diverge");
    let mut c = mpirun();
    c.env("BYOL_MPI_TIMEOUT", "60")
        .args(["-np", "2", byol_bin(), "study", "--preset", "smoke"])
        .args(["--variants", "bn-global,bn-shards-2", "--epochs", "1"])
        .args(["--set", "lr=1e9", "--set", "lr_scale=false"])
        .args(["--set", "max_steps_per_epoch=3", "--tune=off", "--out"])
        .arg(&out);
    let t0 = Instant::now();
    let o = run(c, "mpirun -np 2 byol study with lr 1e9");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    for name in [
        "BN over B (sync-BN) (diverged)",
        "BN over B/2 (2 ranks) (diverged)",
    ] {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }
    for slug in ["bn-global", "bn-shards-2"] {
        assert!(out.join("runs").join(slug).join("diverged.txt").exists());
    }
    let _ = std::fs::remove_dir_all(out);
}
