//! `byol study --preset smoke` through the library: all seven variants of the seed's table, its
//! outputs (results.json, table.md, two valid PNGs), the collapse it reproduces, and that a second
//! run resumes by skipping what is done.

mod common;
use byol::nn::{EncoderNorm, NormKind};
use byol::study::{run_study, Preset, StudyOptions};
use byol::train::config::OptimizerKind;
use byol::train::TrainConfig;
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
        overrides: vec![],
        seeds: 1,
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
        // The kNN monitor and the probe's standard error come with every evaluation.
        let knn = v["final_knn_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&knn), "{}: kNN {knn}", v["name"]);
        let se = v["final_accuracy_se"].as_f64().unwrap();
        assert!(se > 0.0 && se < 0.1, "{}: standard error {se}", v["name"]);
        // An effective rank lies in [1, min(n, d)]; the smoke embeddings are 64-d.
        let rank = v["final_embedding_rank"].as_f64().unwrap();
        assert!((1.0..=64.0).contains(&rank), "{}: rank {rank}", v["name"]);
        if v["name"] != "Random" {
            assert_eq!(v["metrics"].as_array().unwrap().len(), 2, "{}", v["name"]);
            let out_rank = v["final_output_rank"].as_f64().unwrap();
            assert!(
                (1.0..=32.0).contains(&out_rank),
                "{}: {out_rank}",
                v["name"]
            );
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
    assert!(table.contains("| Projection BN Only | Batch Norm | Batch Norm | No Norm |"));
    assert!(table.contains("57.7"));
    for f in ["accuracy.png", "cosine.png", "std.png", "rank.png"] {
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

#[test]
fn variant_groups_and_config_overrides() {
    use byol::study::{apply_overrides, select};
    let names = |sel: &[&str]| -> Vec<&'static str> {
        let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
        select(Some(&sel)).unwrap().iter().map(|v| v.slug).collect()
    };
    assert_eq!(select(None).unwrap().len(), 7);
    assert_eq!(
        names(&["appendix"]),
        ["no-bn-sgd", "no-bn-lars", "no-bn-wd", "gn-ws"]
    );
    assert_eq!(names(&["moco", "byol"]), ["byol", "moco"]);
    assert_eq!(names(&["all"]).len(), 18);
    assert_eq!(
        names(&["parallel"]),
        ["bn-global", "bn-shards-2", "bn-shards-4", "bn-shards-8"]
    );
    assert!(select(Some(&["bogus".to_string()])).is_err());

    // Appendix rows remove batch norm everywhere and pick their optimizer.
    let base = Preset::Quick.base_config();
    for v in select(Some(&["appendix".to_string()])).unwrap() {
        let c = v.config(&base, Preset::Quick);
        assert_ne!(c.encoder_norm, EncoderNorm::Batch, "{}", v.slug);
        assert!(
            c.proj_norm != NormKind::Batch && c.pred_norm != NormKind::Batch,
            "{}",
            v.slug
        );
        c.validate().unwrap();
    }
    let lars = &select(Some(&["no-bn-lars".to_string()])).unwrap()[0];
    assert_eq!(
        lars.config(&base, Preset::Quick).optimizer,
        OptimizerKind::Lars
    );
    for v in select(Some(&["beyond".to_string()])).unwrap() {
        v.config(&base, Preset::Quick).validate().unwrap();
    }
    // Parallel rows: batch norm over B / shards. In one process that is ghost batch norm; on R
    // ranks each rank's shard holds shards / R slices, or sync-BN for the whole batch.
    let parallel = select(Some(&["parallel".to_string()])).unwrap();
    let bn = |ranks: usize| -> Vec<(usize, bool)> {
        let base = TrainConfig {
            ranks,
            ..base.clone()
        };
        parallel
            .iter()
            .map(|v| {
                let c = v.config(&base, Preset::Quick);
                c.validate().unwrap();
                (c.bn_groups, c.sync_bn)
            })
            .collect()
    };
    assert_eq!(bn(1), [(1, false), (2, false), (4, false), (8, false)]);
    assert_eq!(bn(2), [(1, true), (1, false), (2, false), (4, false)]);
    assert!(parallel.iter().all(|v| v.check_ranks(2).is_ok()));
    let err = parallel[1]
        .check_ranks(4)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("B/2 cannot run on 4 ranks"), "{err}");

    let set = |kv: &[&str]| {
        let kv: Vec<String> = kv.iter().map(|s| s.to_string()).collect();
        apply_overrides(base.clone(), &kv)
    };
    let c = set(&["image_size=16", "lr=0.4", "optimizer=lars", "cosine=false"]).unwrap();
    assert_eq!(
        (c.image_size, c.lr, c.optimizer, c.cosine),
        (16, 0.4, OptimizerKind::Lars, false)
    );
    assert_eq!(set(&["width-mult=0.125"]).unwrap().width_mult, 0.125);
    for bad in [
        "nonsense=1",
        "image_size=big",
        "no_equals_sign",
        "cosine=maybe",
    ] {
        let e = set(&[bad]).unwrap_err().to_string();
        assert!(e.contains("--set"), "{bad}: {e}");
    }
}

/// A variant whose loss becomes NaN is reported as diverged and the study goes on; a rerun does
/// not train it into the same NaN again.
#[test]
fn a_diverging_variant_is_reported_and_the_study_goes_on() {
    let e = common::engine();
    let out = std::env::temp_dir().join(format!("byol-test-study-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = StudyOptions {
        preset: Preset::Smoke,
        dataset: None,
        out: out.clone(),
        epochs: Some(1),
        variants: Some(vec!["no-norm".into(), "random".into()]),
        overrides: vec!["lr=1e30".into(), "lr_scale=false".into()],
        seeds: 1,
        progress: false,
    };
    let s = run_study(&e, &opts).unwrap();
    let no_norm = &s.variants[0];
    let why = no_norm.diverged.as_deref().unwrap_or_default();
    assert!(why.contains("NaN") || why.contains("inf"), "{why:?}");
    assert!(s.variants[1].final_accuracy.is_some(), "Random still ran");
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("No Normalization (diverged)"), "{table}");
    let again = run_study(&e, &opts).unwrap();
    assert!(again.variants.iter().all(|v| !v.ran_now));
    assert!(again.variants[0].diverged.is_some());
    std::fs::remove_dir_all(&out).ok();
}

/// `--seeds 2` trains every variant under seeds 0 and 1; its seed-1 rows are exactly those of a
/// one-seed study run with `--set seed=1`, and the summary pairs them.
#[test]
fn a_seed_paired_study_reproduces_each_single_seed_study() {
    let e = common::engine();
    let dir = |name: &str| {
        let d = std::env::temp_dir().join(format!("byol-test-seeds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    };
    let opts = |out: std::path::PathBuf, seeds: usize, overrides: Vec<String>| StudyOptions {
        preset: Preset::Smoke,
        dataset: None,
        out,
        epochs: Some(1),
        variants: Some(vec!["byol".into(), "no-norm".into(), "random".into()]),
        overrides,
        seeds,
        progress: false,
    };
    let (two, one) = (dir("two"), dir("one"));
    let paired = run_study(&e, &opts(two.clone(), 2, vec![])).unwrap();
    let single = run_study(&e, &opts(one.clone(), 1, vec!["seed=1".into()])).unwrap();
    assert_eq!(paired.seeds, [0, 1]);
    assert_eq!(paired.later_seeds.len(), 1);
    for (a, b) in paired.later_seeds[0].iter().zip(&single.variants) {
        assert_eq!((a.seed, b.seed), (1, 1));
        assert_eq!(
            untimed(&a.metrics),
            untimed(&b.metrics),
            "{}: seed 1 differs from the one-seed run",
            a.name
        );
        assert_eq!(a.final_accuracy, b.final_accuracy, "{}", a.name);
        assert_eq!(a.final_knn_accuracy, b.final_knn_accuracy, "{}", a.name);
    }
    // Seed 0 is not seed 1: the seed reaches initialization and data.
    assert_ne!(
        untimed(&paired.variants[0].metrics),
        untimed(&paired.later_seeds[0][0].metrics)
    );
    let byol = &paired.summary[0];
    assert_eq!(byol.seeds, 2);
    let acc = byol.accuracy.as_ref().unwrap();
    assert_eq!(
        acc.values,
        [
            paired.variants[0].final_accuracy.unwrap(),
            paired.later_seeds[0][0].final_accuracy.unwrap()
        ]
    );
    let vs_random = byol.accuracy_vs_random.as_ref().unwrap();
    let want = (acc.values[0] - paired.variants[2].final_accuracy.unwrap() + acc.values[1]
        - paired.later_seeds[0][2].final_accuracy.unwrap())
        / 2.0;
    assert!((vs_random.mean - want).abs() < 1e-12);
    assert!(byol.accuracy_vs_byol.is_none() && paired.summary[2].accuracy_vs_random.is_none());
    let table = std::fs::read_to_string(two.join("table.md")).unwrap();
    assert!(table.contains("Across 2 seeds (0, 1)"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        json["summary"][0]["accuracy"]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A second invocation finds every seed's runs done.
    let again = run_study(&e, &opts(two.clone(), 2, vec![])).unwrap();
    assert!(again
        .variants
        .iter()
        .chain(&again.later_seeds[0])
        .all(|v| !v.ran_now));
    let zero = run_study(&e, &opts(dir("zero"), 0, vec![]));
    assert!(zero.unwrap_err().to_string().contains("--seeds"));
    for d in [two, one] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// Metrics lines without their wall-clock fields.
fn untimed(metrics: &[serde_json::Value]) -> Vec<serde_json::Value> {
    metrics
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(o) = m.as_object_mut() {
                o.remove("seconds");
                o.remove("images_per_sec");
            }
            m
        })
        .collect()
}
