//! `byol adapters` and `byol info` as a user runs them: no alarming `error:` lines on a headless
//! machine (Mesa's Vulkan device-select layer prints two unless byol turns it off), the chosen
//! adapter marked, and `--adapter` by name or by backend.

use std::process::Command;

fn byol(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_byol"))
        .args(args)
        // As a user's shell has it: cargo's own [env] setting must not hide the noise.
        .env_remove("NODEVICE_SELECT")
        .env_remove("BYOL_ADAPTER")
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
