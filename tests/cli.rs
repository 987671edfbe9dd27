//! The `byol` binary as a user runs it: `adapters` and `info` print no alarming `error:` lines on a
//! headless machine (Mesa's Vulkan device-select layer prints two unless byol turns it off), mark
//! the chosen adapter and take `--adapter` by name or by backend; `train --resume` refuses flags it
//! would ignore.

use std::process::Command;

fn byol(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_byol"))
        .args(args)
        // As a user's shell has it: cargo's own [env] setting must not hide the noise.
        .env_remove("NODEVICE_SELECT")
        .env_remove("BYOL_ADAPTER")
        // Kernels measured here go to a file of this test binary, not the user's cache.
        .env(
            "BYOL_TUNE_CACHE",
            std::env::temp_dir().join(format!("byol-cli-tune-{}.json", std::process::id())),
        )
        .output()
        .expect("run byol");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn adapters_prints_no_error_lines_and_marks_its_choice() {
    let (ok, stdout, stderr) = byol(&["adapters"]);
    assert!(ok, "byol adapters failed: {stderr}");
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!line.starts_with("error:"), "noise on the terminal: {line}");
    }
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('*')).count(),
        1,
        "exactly one adapter is marked as chosen:\n{stdout}"
    );
}

#[test]
fn info_takes_an_adapter_by_backend_and_refuses_an_unknown_one() {
    let (ok, stdout, stderr) = byol(&["info"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("error:")), "{stderr}");
    let backend = stdout
        .lines()
        .find_map(|l| l.strip_prefix("adapter:"))
        .and_then(|l| l.trim().rsplit_once('('))
        .map(|(_, b)| b.trim_end_matches(')').to_lowercase())
        .expect("info names its adapter and backend");
    let (ok, stdout, stderr) = byol(&["--adapter", &backend, "info"]);
    assert!(ok, "--adapter {backend}: {stderr}");
    assert!(
        stdout.to_lowercase().contains(&format!("({backend})")),
        "{stdout}"
    );
    let (ok, _, stderr) = byol(&["--adapter", "no-such-gpu-xyz", "info"]);
    assert!(!ok);
    assert!(stderr.contains("no-such-gpu-xyz"), "{stderr}");
}

#[test]
fn resume_refuses_flags_it_would_ignore_and_names_them() {
    let dir = std::env::temp_dir().join(format!("byol-cli-resume-{}", std::process::id()));
    let dir = dir.to_str().unwrap();
    let (ok, _, stderr) = byol(&["train", "--resume", dir, "--lr", "0.5", "--batch-size", "8"]);
    assert!(!ok);
    assert!(
        stderr.contains("--lr") && stderr.contains("--batch-size"),
        "{stderr}"
    );
    // Allowed with --resume: the refusal is not what stops this one (there is no run there).
    let (ok, _, stderr) = byol(&["train", "--resume", dir, "--epochs", "9"]);
    assert!(!ok);
    assert!(!stderr.contains("would be ignored"), "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
}

/// Every flag of `byol train` has a line of help, and README's table of them lists exactly the
/// flags the program takes (a renamed, added or dropped flag fails here until README follows).
#[test]
fn train_flags_all_have_help_and_match_the_readme() {
    use clap::Args;
    let cmd = byol::cli::train::TrainArgs::augment_args(clap::Command::new("train"));
    let mut flags: Vec<String> = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        assert!(!help.trim().is_empty(), "--{long} has no help");
        flags.push(format!("--{long}"));
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("### `byol train`")
        .expect("README has a byol train section");
    let section = &readme[start..];
    let section = &section[..section.find("What a run prints").unwrap_or(section.len())];
    let mut documented: Vec<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| code.split_whitespace().next())
        .filter(|w| w.starts_with("--"))
        .map(str::to_string)
        .collect();
    documented.sort();
    documented.dedup();
    flags.sort();
    assert_eq!(
        documented, flags,
        "README's byol train table and `byol train --help` differ"
    );
}

/// On a software adapter (CI's), size flags the command line leaves out take the CPU size and the
/// run says so; a size flag given keeps its value.
#[test]
fn a_cpu_run_takes_the_cpu_size_for_the_flags_not_given() {
    let dir = std::env::temp_dir().join(format!("byol-cli-cpu-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let args = [
        "train",
        "--dataset",
        "synthetic:64:16",
        "--image-size",
        "12",
        "--max-steps-per-epoch",
        "1",
        "--eval-every",
        "0",
        "--quiet",
        "--out",
        out,
    ];
    let (ok, _, stderr) = byol(&args);
    assert!(ok, "{stderr}");
    // --quiet silences progress, not the choice of size: it is printed by the first lines only
    // without --quiet, so read it from the run's config instead.
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&config).unwrap();
    let c = byol::train::config::CPU_SIZE;
    assert_eq!(cfg["image_size"], 12, "a given flag keeps its value");
    assert_eq!(cfg["width_mult"], c.width_mult);
    assert_eq!(cfg["batch_size"], c.batch_size);
    assert_eq!(cfg["epochs"], c.epochs);
    assert_eq!(
        cfg["proj_hidden"],
        byol::train::TrainConfig::default().proj_hidden
    );
    std::fs::remove_dir_all(&dir).ok();

    let mut loud: Vec<&str> = args.iter().copied().filter(|a| *a != "--quiet").collect();
    loud.extend(["--epochs", "1"]);
    let (ok, _, stderr) = byol(&loud);
    assert!(ok, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("CPU-sized run"))
        .unwrap_or_else(|| panic!("no CPU-size line in:\n{stderr}"));
    assert!(
        line.contains("--width-mult 0.125") && line.contains("--batch-size 32"),
        "{line}"
    );
    assert!(
        !line.contains("--image-size") && !line.contains("--epochs"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `byol tune` measures every pass of a configuration, prints the table and fills the cache; run
/// again it takes every choice from the cache; `--tune off` is accepted by every command; a bad
/// value is a clear error.
#[test]
fn tune_fills_the_cache_and_a_second_run_reads_it() {
    let cache = std::env::temp_dir().join(format!("byol-cli-tune-own-{}.json", std::process::id()));
    std::fs::remove_file(&cache).ok();
    let tune = || {
        let out = Command::new(env!("CARGO_BIN_EXE_byol"))
            .args([
                "tune",
                "--dataset",
                "synthetic:64:16",
                "--image-size",
                "16",
                "--width-mult",
                "0.125",
                "--batch-size",
                "16",
                "--proj-hidden",
                "32",
                "--proj-out",
                "16",
                "--pred-hidden",
                "32",
            ])
            .env("BYOL_TUNE_CACHE", &cache)
            .env_remove("BYOL_ADAPTER")
            .output()
            .expect("run byol tune");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = tune();
    let rows: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with("| conv2d") || l.starts_with("| matmul"))
        .collect();
    assert!(rows.iter().any(|l| l.contains("input-grad")), "{first}");
    assert!(rows.iter().all(|l| l.contains("measured now")), "{first}");
    assert!(cache.exists(), "{first}");
    let second = tune();
    // Every pass again, all from the cache (products met only inside a candidate's timing run in
    // the first, such as an unfolded pass that lost, are not met again).
    let conv = |t: &str| t.lines().filter(|l| l.starts_with("| conv2d")).count();
    assert_eq!(conv(&first), conv(&second), "{second}");
    let rows2: Vec<&str> = second
        .lines()
        .filter(|l| l.starts_with("| conv2d") || l.starts_with("| matmul"))
        .collect();
    assert!(rows2.iter().all(|l| l.contains("| cache |")), "{second}");
    let (ok, _, stderr) = byol(&["tune", "--resume", "some-run"]);
    assert!(!ok);
    assert!(stderr.contains("--resume some-run"), "{stderr}");
    let (ok, _, stderr) = byol(&["--tune", "off", "info"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = byol(&["--tune", "sometimes", "info"]);
    assert!(!ok);
    assert!(stderr.contains("--tune"), "{stderr}");
    std::fs::remove_file(&cache).ok();
}
