//! `byol study --preset smoke` through the library: all seven variants of the seed's table, its
//! outputs (results.json, table.md, two valid PNGs), the collapse it reproduces, and that a second
//! run resumes by skipping what is done.

mod common;
use byol::study::{run_study, Preset, StudyOptions};
use std::time::Instant;

#[test]
fn smoke_study_writes_the_table_and_figures_and_resumes() {
    let e = common::engine();
    let out = std::env::temp_dir().join(format!("byol-test-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = StudyOptions {
        preset: Preset::Smoke,
        dataset: None,
        out: out.clone(),
        epochs: None,
        variants: None,
        progress: false,
    };
    let t0 = Instant::now();
    run_study(&e, &opts).unwrap();
    let first = t0.elapsed();

    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let variants = json["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 7);
    let by_name = |n: &str| {
        variants
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    for v in variants {
        assert!(v["final_accuracy"].as_f64().is_some(), "{}", v["name"]);
        if v["name"] != "Random" {
            assert_eq!(v["metrics"].as_array().unwrap().len(), 2, "{}", v["name"]);
        }
    }
    let cos_neg = |n: &str| by_name(n)["final_cos_neg"].as_f64().unwrap();
    assert!(
        cos_neg("No Normalization") > cos_neg("BYOL"),
        "no-norm cos- {} should exceed BYOL's {}",
        cos_neg("No Normalization"),
        cos_neg("BYOL")
    );

    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("| Projection BN Only | Batch Norm | No Norm |"));
    assert!(table.contains("57.7"));
    for f in ["accuracy.png", "cosine.png"] {
        let img = image::open(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() > 100 && img.height() > 100);
    }

    // Everything is done: the second run only rereads and redraws.
    let t1 = Instant::now();
    let again = run_study(&e, &opts).unwrap();
    let second = t1.elapsed();
    assert!(again.variants.iter().all(|v| !v.ran_now));
    assert!(
        second * 5 < first,
        "the resumed study took {second:?} after {first:?}"
    );
    std::fs::remove_dir_all(&out).ok();
}
