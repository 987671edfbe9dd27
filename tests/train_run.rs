//! End-to-end training on the built-in dataset with a tiny ResNet (width 1/8, 16x16 views): the
//! loss goes down, a resumed run reproduces the uninterrupted one, bad flags are errors, and a run
//! writes its config, metrics and checkpoint.

mod common;
use byol::nn::{EncoderNorm, NormKind};
use byol::ssl::Method;
use byol::train::config::{AugmentPreset, OptimizerKind};
use byol::train::{train, train_until, TrainConfig};
use std::path::PathBuf;

fn tiny() -> TrainConfig {
    TrainConfig {
        dataset: "synthetic:256:16".into(),
        image_size: 16,
        width_mult: 0.125,
        proj_hidden: 64,
        proj_out: 32,
        pred_hidden: 64,
        batch_size: 16,
        epochs: 2,
        max_steps_per_epoch: 4,
        eval_every: 0,
        log_every: 1000,
        ..TrainConfig::default()
    }
}

fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("byol-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn byol_loss_goes_down_and_the_run_directory_is_complete() {
    let e = common::engine();
    let dir = run_dir("loss");
    // Identical views make the target easy to predict: the loss must fall quickly.
    let cfg = TrainConfig {
        augment: AugmentPreset::None,
        epochs: 3,
        lr: 0.4,
        ..tiny()
    };
    let m = train(&e, &cfg, &dir, false, false).unwrap();
    assert_eq!(m.len(), 3);
    assert!(
        m[2].loss < m[0].loss * 0.9,
        "loss did not fall: {:?}",
        m.iter().map(|x| x.loss).collect::<Vec<_>>()
    );
    for f in ["config.json", "metrics.jsonl", "checkpoint.bin"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(lines.contains("\"cos_neg\""));
    std::fs::remove_dir_all(&dir).ok();
}

/// With kernels chosen by measurement, a resumed run takes the kernels its run recorded in
/// `kernels.json` (not what a fresh engine would measure), so it stays bit-identical; an edited
/// record is obeyed, and a broken one is an error that names the file.
#[test]
fn resumed_run_replays_the_kernels_its_run_recorded() {
    let cache = std::env::temp_dir().join(format!("byol-test-tune-{}.json", std::process::id()));
    let tuned = |name: &str| {
        common::engine_with(byol::EngineOptions {
            tune: byol::TuneMode::On,
            tune_cache: Some(cache.with_extension(format!("{name}.json"))),
            ..Default::default()
        })
    };
    let cfg = tiny();
    let first = tuned("first");
    let straight = run_dir("tuned-straight");
    let m_full = train(&first, &cfg, &straight, false, false).unwrap();
    let split = run_dir("tuned-split");
    train_until(&first, &cfg, &split, false, false, Some(1)).unwrap();
    let record = split.join("kernels.json");
    let text = std::fs::read_to_string(&record).expect("kernels.json beside the checkpoint");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kernels = v["kernels"].as_object().unwrap().clone();
    assert!(
        kernels.keys().any(|k| k.starts_with("conv2d input-grad")),
        "{text}"
    );
    // A fresh engine with an empty cache of its own: it must not measure what the run recorded.
    let fresh = tuned("fresh");
    let m_rest = train(&fresh, &cfg, &split, true, false).unwrap();
    assert_eq!(
        (m_full[1].loss, m_full[1].cos_pos, m_full[1].cos_neg),
        (m_rest[0].loss, m_rest[0].cos_pos, m_rest[0].cos_neg),
        "resume diverged"
    );
    for c in fresh.kernel_choices() {
        if let Some(k) = kernels.get(&c.key) {
            assert_eq!(
                (c.kernel.as_str(), c.source),
                (k.as_str().unwrap(), byol::engine::ChoiceSource::Run)
            );
        }
    }
    // An edited record is obeyed: every convolution pass flipped.
    let flipped: serde_json::Map<String, serde_json::Value> = kernels
        .iter()
        .map(|(k, v)| {
            let other = match v.as_str() {
                Some("unfold") => "direct",
                Some("direct") => "unfold",
                _ => v.as_str().unwrap(),
            };
            (k.clone(), other.into())
        })
        .collect();
    let edited = serde_json::json!({ "format": v["format"], "kernels": flipped });
    std::fs::write(&record, edited.to_string()).unwrap();
    let cfg3 = TrainConfig {
        epochs: 3,
        ..cfg.clone()
    };
    let third = tuned("third");
    train(&third, &cfg3, &split, true, false).unwrap();
    for c in third.kernel_choices() {
        if let Some(k) = flipped.get(&c.key) {
            assert_eq!(c.kernel.as_str(), k.as_str().unwrap(), "{}", c.key);
        }
    }
    // A broken record stops the resume with the file's name.
    std::fs::write(&record, "{ broken").unwrap();
    let cfg4 = TrainConfig {
        epochs: 4,
        ..cfg.clone()
    };
    let err = train(&tuned("fourth"), &cfg4, &split, true, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernels.json"), "{err}");
    for d in [&straight, &split] {
        std::fs::remove_dir_all(d).ok();
    }
    for name in ["first", "fresh", "third", "fourth"] {
        std::fs::remove_file(cache.with_extension(format!("{name}.json"))).ok();
    }
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_run() {
    assert_resume_reproduces("byol", &tiny());
}

/// The seed's contrastive row: negatives from a queue of past targets, which the checkpoint must
/// carry (with its write position) for a resumed run to see the same negatives.
#[test]
fn resumed_contrastive_queue_run_reproduces_the_uninterrupted_run() {
    let cfg = TrainConfig {
        method: Method::Contrastive,
        contrastive_queue: true,
        queue_size: 40, // not a multiple of the 2 x 16 keys pushed per step: the ring wraps
        proj_norm: NormKind::None,
        pred_norm: NormKind::None,
        ..tiny()
    };
    assert_resume_reproduces("contrastive-queue", &cfg);
}

fn assert_resume_reproduces(name: &str, cfg: &TrainConfig) {
    let e = common::engine();
    let straight = run_dir(&format!("straight-{name}"));
    let m_full = train(&e, cfg, &straight, false, false).unwrap();
    let split = run_dir(&format!("split-{name}"));
    // Interrupted after its first epoch, then resumed.
    train_until(&e, cfg, &split, false, false, Some(1)).unwrap();
    let m_rest = train(&e, cfg, &split, true, false).unwrap();
    assert_eq!(m_rest.len(), 1);
    assert_eq!(m_rest[0].epoch, 2);
    let (a, b) = (&m_full[1], &m_rest[0]);
    assert_eq!(
        (a.loss, a.cos_pos, a.cos_neg),
        (b.loss, b.cos_pos, b.cos_neg),
        "resume diverged"
    );
    std::fs::remove_dir_all(&straight).ok();
    std::fs::remove_dir_all(&split).ok();
}

#[test]
fn bad_configurations_are_errors() {
    let e = common::engine();
    let dir = run_dir("bad");
    for cfg in [
        TrainConfig {
            proj_hidden: 0,
            ..tiny()
        },
        TrainConfig {
            warmup_epochs: f64::NAN,
            ..tiny()
        },
        TrainConfig {
            batch_size: 1,
            ..tiny()
        },
        TrainConfig {
            dataset: "stl10:/no/such/dir".into(),
            ..tiny()
        },
        TrainConfig { lr: -1.0, ..tiny() },
        TrainConfig {
            bn_groups: 0,
            ..tiny()
        },
    ] {
        assert!(
            train(&e, &cfg, &dir, false, false).is_err(),
            "{cfg:?} was accepted"
        );
    }
    // Ghost batch norm needs equal slices of at least 2 images, and not --sync-bn beside it.
    let b = tiny().batch_size;
    for (groups, sync, says) in [
        (3, false, "equal groups of at least 2 images"),
        (b, false, "equal groups of at least 2 images"),
        (2, true, "exclude each other"),
    ] {
        let cfg = TrainConfig {
            bn_groups: groups,
            sync_bn: sync,
            ..tiny()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(says), "--bn-groups {groups}: {err}");
    }
    // Resuming with different flags is refused.
    let ok = TrainConfig {
        epochs: 1,
        max_steps_per_epoch: 1,
        ..tiny()
    };
    train(&e, &ok, &dir, false, false).unwrap();
    let other = TrainConfig {
        width_mult: 0.25,
        ..ok
    };
    assert!(train(&e, &other, &dir, true, false).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_method_and_optimizer_trains() {
    let e = common::engine();
    for (method, optimizer, enc) in [
        (Method::Contrastive, OptimizerKind::Sgd, EncoderNorm::Batch),
        (Method::Moco, OptimizerKind::Sgd, EncoderNorm::Batch),
        (Method::SimSiam, OptimizerKind::Sgd, EncoderNorm::Batch),
        (Method::SimClr, OptimizerKind::Lars, EncoderNorm::GroupWs),
        (Method::Byol, OptimizerKind::Lars, EncoderNorm::None),
    ] {
        let dir = run_dir(&format!("method-{method}"));
        let cfg = TrainConfig {
            method,
            optimizer,
            encoder_norm: enc,
            queue_size: 37,
            temperature: 0.5,
            epochs: 1,
            max_steps_per_epoch: 2,
            ..tiny()
        };
        let m = train(&e, &cfg, &dir, false, false).unwrap_or_else(|err| panic!("{method}: {err}"));
        assert!(m[0].loss.is_finite(), "{method}: {:?}", m[0]);
        // Every parameter got a gradient and so a momentum buffer: the invariant --resume checks.
        let (state, _) = byol::train::checkpoint::load(&dir.join("checkpoint.bin")).unwrap();
        let flags: Vec<Vec<bool>> =
            serde_json::from_value(state["momentum_present"].clone()).unwrap();
        assert!(flags.iter().flatten().all(|&f| f), "{method}: {flags:?}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn a_diverging_run_stops_with_an_error_and_writes_no_checkpoint() {
    let e = common::engine();
    let dir = run_dir("nan");
    // A learning rate of 1e30 overflows the weights within two steps.
    let cfg = TrainConfig {
        lr: 1e30,
        lr_scale: false,
        log_every: 1,
        ..tiny()
    };
    let err = train(&e, &cfg, &dir, false, false).unwrap_err().to_string();
    assert!(err.contains("NaN") || err.contains("inf"), "{err}");
    assert!(err.contains("checkpoint"), "{err}");
    assert!(
        !dir.join("checkpoint.bin").exists(),
        "a diverged epoch must not be checkpointed"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `config.json` holds the flags' own words, so files written before the config was typed (every
/// choice a string) load into the same config, and a word no flag takes is an error naming it.
#[test]
fn config_json_uses_the_flags_words_and_old_files_load() {
    let json = serde_json::to_value(TrainConfig::default()).unwrap();
    assert_eq!(json["method"], "byol");
    assert_eq!(json["encoder_norm"], "batch");
    assert_eq!(json["eval_protocol"], "half-test");
    let mut old = json.clone();
    old["encoder_norm"] = "gn-ws".into();
    old["proj_norm"] = "group".into();
    old["pred_norm"] = "group:8".into();
    old["method"] = "simsiam".into();
    let cfg: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(cfg.encoder_norm, EncoderNorm::GroupWs);
    assert_eq!(cfg.proj_norm, NormKind::Group(32));
    assert_eq!(cfg.pred_norm, NormKind::Group(8));
    assert_eq!(cfg.method, Method::SimSiam);
    let back: TrainConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    for (key, word) in [
        ("method", "nope"),
        ("proj_norm", "weird"),
        ("optimizer", "adam"),
    ] {
        let mut bad = json.clone();
        bad[key] = word.into();
        let err = serde_json::from_value::<TrainConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains(word), "{key}={word}: {err}");
    }
}

/// An evaluation that cannot run (one labeled image) is refused before any step is trained.
#[test]
fn an_impossible_evaluation_is_refused_before_training() {
    let e = common::engine();
    let dir = run_dir("eval-images-1");
    let cfg = TrainConfig {
        eval_every: 1,
        eval_images: 1,
        ..tiny()
    };
    let t0 = std::time::Instant::now();
    let err = train(&e, &cfg, &dir, false, false).unwrap_err().to_string();
    assert!(err.contains("--eval-images 1"), "{err}");
    assert!(!dir.join("checkpoint.bin").exists());
    assert!(
        !dir.join("config.json").exists(),
        "refused before writing anything"
    );
    assert!(t0.elapsed().as_secs() < 30, "it trained first");
    std::fs::remove_dir_all(&dir).ok();
}

/// A learning rate so high that the weights explode while normalization keeps the loss finite
/// (at 1e4 they stay finite: without the check this run ends "done" and saves them) must not end
/// with garbage saved: the run stops with an error naming the learning rate, and no exploded
/// checkpoint is written.
#[test]
fn exploding_weights_with_a_finite_loss_are_a_divergence() {
    let e = common::engine();
    let dir = run_dir("explode");
    let cfg = TrainConfig {
        lr: 1e4,
        lr_scale: false,
        ..tiny()
    };
    let err = train(&e, &cfg, &dir, false, false).unwrap_err();
    assert!(matches!(err, byol::Error::Diverged(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("--lr") && text.contains("checkpoint"),
        "{text}"
    );
    assert!(
        !dir.join("checkpoint.bin").exists(),
        "an exploded state was saved"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Every evaluated epoch reports, beside the accuracy, the same probe on the run's untrained
/// initialization (what `byol eval --random` gives) and chance, computed once and cached.
#[test]
fn evaluated_epochs_report_the_random_baseline_and_chance() {
    let e = common::engine();
    let dir = run_dir("baseline");
    let cfg = TrainConfig {
        epochs: 2,
        eval_every: 1,
        eval_images: 200,
        ..tiny()
    };
    let m = train(&e, &cfg, &dir, false, false).unwrap();
    let random = byol::train::evaluate_run(&e, &dir, &cfg, true).unwrap();
    for epoch in &m {
        assert_eq!(epoch.chance_accuracy, Some(0.1), "10 synthetic classes");
        assert_eq!(epoch.random_accuracy, Some(random.probe.accuracy));
    }
    let cached = std::fs::read_to_string(dir.join("baseline.json")).unwrap();
    assert!(cached.contains("random_accuracy"), "{cached}");
    let line = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(line.contains("\"chance_accuracy\":0.1"), "{line}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Evaluating a run whose config.json no longer matches its checkpoint says so as an evaluation
/// problem, not as a `--resume` one.
#[test]
fn eval_reports_a_config_mismatch_as_its_own() {
    let e = common::engine();
    let dir = run_dir("eval-mismatch");
    let cfg = TrainConfig {
        epochs: 1,
        ..tiny()
    };
    train(&e, &cfg, &dir, false, false).unwrap();
    let edited = TrainConfig { lr: 0.7, ..cfg };
    let err = match byol::train::evaluate_run(&e, &dir, &edited, false) {
        Ok(_) => panic!("a mismatched config was evaluated"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("eval:") && !err.contains("--resume"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A checkpoint edited so that its step count or its optimizer state could not come from
/// training (with a valid checksum: rewritten through the checkpoint writer) is refused by
/// --resume with an error naming the problem, instead of resuming with wrong schedules or
/// restarted momentum.
#[test]
fn an_edited_step_count_or_momentum_state_is_refused_on_resume() {
    let e = common::engine();
    let dir = run_dir("edited");
    let cfg = TrainConfig {
        epochs: 1,
        ..tiny()
    };
    train(&e, &cfg, &dir, false, false).unwrap();
    let path = dir.join("checkpoint.bin");
    let (state, tensors) = byol::train::checkpoint::load(&path).unwrap();
    let longer = TrainConfig {
        epochs: 2,
        ..cfg.clone()
    };
    let resume_err = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut s = state.clone();
        edit(&mut s);
        byol::train::checkpoint::save(&path, s, &tensors).unwrap();
        match train(&e, &longer, &dir, true, false) {
            Ok(_) => panic!("an edited checkpoint resumed"),
            Err(err) => err.to_string(),
        }
    };
    let err = resume_err(&|s| s["step"] = serde_json::json!(3));
    assert!(err.contains("3 steps") && err.contains("means 4"), "{err}");
    let err = resume_err(&|s| s["momentum_present"][0][5] = serde_json::json!(false));
    assert!(
        err.contains("parameter 5 of optimizer 0 has no momentum"),
        "{err}"
    );
    let err = resume_err(&|s| {
        s["momentum_present"][1].as_array_mut().unwrap().pop();
    });
    assert!(err.contains("optimizer 1 has momentum flags for"), "{err}");
    // The untouched state still resumes.
    byol::train::checkpoint::save(&path, state.clone(), &tensors).unwrap();
    train(&e, &longer, &dir, true, false).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs with the same encoder and evaluation (a study's variants differ in their heads) share one
/// random-encoder baseline through a shared folder; a different seed computes its own.
#[test]
fn runs_with_one_encoder_share_their_random_baseline() {
    let e = common::engine();
    let shared = run_dir("shared-baselines");
    let cfg = TrainConfig {
        epochs: 1,
        max_steps_per_epoch: 1,
        eval_every: 1,
        eval_images: 100,
        ..tiny()
    };
    let ctl = byol::train::RunControl {
        shared_baselines: Some(shared.clone()),
        ..Default::default()
    };
    let first = run_dir("shared-a");
    byol::train::train_with(&e, &cfg, &first, false, &ctl).unwrap();
    // Mark the shared value: a run that reuses it reports the mark.
    let files: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    v["random_accuracy"] = serde_json::json!(0.123);
    std::fs::write(&files[0], v.to_string()).unwrap();

    let other_heads = TrainConfig {
        proj_norm: NormKind::None,
        pred_norm: NormKind::None,
        ..cfg.clone()
    };
    let second = run_dir("shared-b");
    let m = byol::train::train_with(&e, &other_heads, &second, false, &ctl).unwrap();
    assert_eq!(m[0].random_accuracy, Some(0.123));
    let other_seed = TrainConfig { seed: 5, ..cfg };
    let third = run_dir("shared-c");
    let m = byol::train::train_with(&e, &other_seed, &third, false, &ctl).unwrap();
    assert_ne!(m[0].random_accuracy, Some(0.123));
    for d in [shared, first, second, third] {
        std::fs::remove_dir_all(d).ok();
    }
}
