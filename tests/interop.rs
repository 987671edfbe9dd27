//! Interop: safetensors export and import under torchvision's ResNet-18 names, `.npy`
//! embeddings. Files in these tests are written by a small safetensors writer here (not the
//! project's), from a ResNet-18 layout written out here from torchvision's definition.

mod common;
use byol::cli::interop::{self, EncoderSource, ExportArgs};
use byol::interop::{torch_names, weights};
use byol::nn::{EncoderNorm, Stem};
use byol::rng::Rng;
use byol::ssl::SslModel;
use byol::train::{embed, train, TrainConfig};
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("byol-interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One tensor for the independent writer: name, safetensors dtype, shape, raw bytes.
struct Raw {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// The safetensors layout by its specification: u64 LE header length, a JSON header of
/// `{name: {dtype, shape, data_offsets}}` (plus `__metadata__`), then the data back to back.
fn write_safetensors(path: &Path, tensors: &[Raw], metadata: &[(&str, &str)]) {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        header.insert("__metadata__".into(), m.into());
    }
    let mut data: Vec<u8> = Vec::new();
    for t in tensors {
        let start = data.len();
        data.extend(&t.bytes);
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut json = serde_json::to_string(&header).unwrap().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// torchvision's `resnet18()` state_dict names and shapes for stem width `c0` and a `k`x`k` stem
/// conv (torchvision: c0 = 64, k = 7), fc included, num_batches_tracked as int64 scalars.
fn torchvision_resnet18(c0: usize, k: usize) -> Vec<(String, &'static str, Vec<usize>)> {
    let mut v: Vec<(String, &'static str, Vec<usize>)> = Vec::new();
    let bn = |v: &mut Vec<(String, &'static str, Vec<usize>)>, name: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("{name}.{p}"), "F32", vec![c]));
        }
        v.push((format!("{name}.num_batches_tracked"), "I64", vec![]));
    };
    v.push(("conv1.weight".into(), "F32", vec![c0, 3, k, k]));
    bn(&mut v, "bn1", c0);
    let mut c_in = c0;
    for (stage, mult) in [1, 2, 4, 8].into_iter().enumerate() {
        let c = c0 * mult;
        for block in 0..2 {
            let name = format!("layer{}.{block}", stage + 1);
            let cin = if block == 0 { c_in } else { c };
            v.push((format!("{name}.conv1.weight"), "F32", vec![c, cin, 3, 3]));
            bn(&mut v, &format!("{name}.bn1"), c);
            v.push((format!("{name}.conv2.weight"), "F32", vec![c, c, 3, 3]));
            bn(&mut v, &format!("{name}.bn2"), c);
            if block == 0 && stage > 0 {
                v.push((
                    format!("{name}.downsample.0.weight"),
                    "F32",
                    vec![c, cin, 1, 1],
                ));
                bn(&mut v, &format!("{name}.downsample.1"), c);
            }
        }
        c_in = c;
    }
    v.push(("fc.weight".into(), "F32", vec![1000, c0 * 8]));
    v.push(("fc.bias".into(), "F32", vec![1000]));
    v
}

/// Random values for a layout (variances positive), as the writer's tensors and by name.
fn random_tensors(layout: &[(String, &'static str, Vec<usize>)], seed: u64) -> Vec<Raw> {
    let mut rng = Rng::new(seed);
    layout
        .iter()
        .map(|(name, dtype, shape)| {
            let n: usize = shape.iter().product();
            let bytes = if *dtype == "I64" {
                7i64.to_le_bytes().to_vec()
            } else {
                let lo = if name.ends_with("running_var") {
                    0.5
                } else {
                    -1.0
                };
                let v: Vec<f32> = (0..n).map(|_| rng.uniform(lo, 1.0) as f32).collect();
                f32_bytes(&v)
            };
            Raw {
                name: name.clone(),
                dtype,
                shape: shape.clone(),
                bytes,
            }
        })
        .collect()
}

fn values(raw: &[Raw], name: &str) -> Vec<f32> {
    let t = raw.iter().find(|t| t.name == name).unwrap();
    t.bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn cifar_eighth() -> TrainConfig {
    TrainConfig {
        dataset: "synthetic:256:16".into(),
        image_size: 16,
        width_mult: 0.125,
        proj_hidden: 64,
        proj_out: 32,
        pred_hidden: 64,
        batch_size: 16,
        epochs: 1,
        max_steps_per_epoch: 2,
        eval_every: 0,
        log_every: 1000,
        ..TrainConfig::default()
    }
}

fn load_err(path: &Path, cfg: &TrainConfig) -> String {
    let e = common::engine();
    let model = SslModel::new(&e, cfg.model_config().unwrap()).unwrap();
    match weights::read(path).and_then(|f| weights::load_encoder(&f, &model)) {
        Ok(()) => panic!("{} loaded", path.display()),
        Err(err) => err.to_string(),
    }
}

// ---------------------------------------------------------------- names (no GPU)

#[test]
fn names_follow_torchvision_both_ways() {
    let pairs = [
        ("stem.conv.weight", "conv1.weight"),
        ("stem.norm.running_var", "bn1.running_var"),
        ("layer1.0.conv1.weight", "layer1.0.conv1.weight"),
        ("layer1.1.norm2.bias", "layer1.1.bn2.bias"),
        ("layer3.0.norm1.weight", "layer3.0.bn1.weight"),
        (
            "layer2.0.shortcut.conv.weight",
            "layer2.0.downsample.0.weight",
        ),
        (
            "layer4.0.shortcut.norm.running_mean",
            "layer4.0.downsample.1.running_mean",
        ),
        ("projector.fc1.weight", "projector.fc1.weight"),
        ("predictor.norm.bias", "predictor.norm.bias"),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(torch_names::to_torchvision(ours), theirs);
        assert_eq!(torch_names::from_torchvision(theirs), ours);
    }
}

// ---------------------------------------------------------------- weights in

#[test]
fn a_torchvision_layout_from_an_independent_writer_loads() {
    let dir = temp("independent");
    let layout = torchvision_resnet18(8, 3);
    let raw = random_tensors(&layout, 1);
    let path = dir.join("resnet.safetensors");
    write_safetensors(&path, &raw, &[]);

    let file = weights::read(&path).unwrap();
    let enc = weights::encoder_config(&file).unwrap();
    assert_eq!(
        (enc.stem, enc.width_mult, enc.norm),
        (Stem::Cifar, 0.125, EncoderNorm::Batch)
    );
    let e = common::engine();
    let model = SslModel::new(&e, cifar_eighth().model_config().unwrap()).unwrap();
    weights::load_encoder(&file, &model).unwrap();
    // Each tensor landed under its byol name, in the online and the target network alike.
    for target in [false, true] {
        let (encoder, _, params) = model.network(target).unwrap();
        for (ours, theirs) in [
            ("stem.conv.weight", "conv1.weight"),
            (
                "layer2.0.shortcut.conv.weight",
                "layer2.0.downsample.0.weight",
            ),
            ("layer4.1.norm2.weight", "layer4.1.bn2.weight"),
        ] {
            assert_eq!(
                params.get(ours).unwrap().to_vec().unwrap(),
                values(&raw, theirs)
            );
        }
        let norm = encoder
            .norms()
            .into_iter()
            .find(|n| n.name() == "layer3.0.shortcut.norm")
            .unwrap();
        let stats = norm.state().unwrap();
        assert_eq!(
            stats.running_var.to_vec().unwrap(),
            values(&raw, "layer3.0.downsample.1.running_var")
        );
        assert_eq!(
            stats.running_mean.to_vec().unwrap(),
            values(&raw, "layer3.0.downsample.1.running_mean")
        );
    }

    // torchvision's own stem and width read off the shapes alone.
    let big = dir.join("resnet18.safetensors");
    let layout = torchvision_resnet18(64, 7);
    let shapes_only: Vec<Raw> = layout
        .iter()
        .filter(|(n, _, _)| n.starts_with("conv1") || n.starts_with("bn1"))
        .map(|(n, d, s)| Raw {
            name: n.clone(),
            dtype: d,
            shape: s.clone(),
            bytes: vec![0; s.iter().product::<usize>() * if *d == "I64" { 8 } else { 4 }],
        })
        .collect();
    write_safetensors(&big, &shapes_only, &[]);
    let enc = weights::encoder_config(&weights::read(&big).unwrap()).unwrap();
    assert_eq!((enc.stem, enc.width_mult), (Stem::ImageNet, 1.0));
}

#[test]
fn files_that_do_not_fit_are_errors_that_list_the_names() {
    let dir = temp("faults");
    let cfg = cifar_eighth();
    let layout = torchvision_resnet18(8, 3);

    // A wrong shape, a missing tensor and an unexpected one, all named in one error.
    let mut raw = random_tensors(&layout, 2);
    let conv = raw
        .iter_mut()
        .find(|t| t.name == "layer1.0.conv1.weight")
        .unwrap();
    conv.shape = vec![8, 8, 1, 1];
    conv.bytes.truncate(8 * 8 * 4);
    raw.retain(|t| t.name != "layer4.1.bn2.running_var");
    raw.push(Raw {
        name: "layer5.0.conv1.weight".into(),
        dtype: "F32",
        shape: vec![2],
        bytes: f32_bytes(&[1.0, 2.0]),
    });
    let path = dir.join("misfit.safetensors");
    write_safetensors(&path, &raw, &[]);
    let err = load_err(&path, &cfg);
    for want in [
        "shapes differ: layer1.0.conv1.weight is [8, 8, 1, 1] in the file, [8, 8, 3, 3] in the model",
        "missing: layer4.1.bn2.running_var",
        "unexpected: layer5.0.conv1.weight",
        "misfit.safetensors",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    // A whole width off: every tensor's shape is named (a dozen, then a count).
    let wide = dir.join("wide.safetensors");
    write_safetensors(&wide, &random_tensors(&torchvision_resnet18(16, 3), 3), &[]);
    let err = load_err(&wide, &cfg);
    assert!(
        err.contains("conv1.weight is [16, 3, 3, 3] in the file, [8, 3, 3, 3] in the model"),
        "{err}"
    );
    assert!(err.contains("more"), "{err}");

    let good = random_tensors(&layout, 4);
    let path = dir.join("good.safetensors");
    write_safetensors(&path, &good, &[]);
    let bytes = std::fs::read(&path).unwrap();

    // Truncated: the header promises data the file no longer has.
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = weights::read(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    // A header length that lies (longer than the file), and a header that is not JSON.
    let mut lying = bytes.clone();
    lying[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    let liar = dir.join("liar.safetensors");
    std::fs::write(&liar, &lying).unwrap();
    let err = weights::read(&liar).unwrap_err().to_string();
    assert!(err.contains("not a valid safetensors"), "{err}");
    let mut garbled = bytes.clone();
    garbled[8] = b'!';
    std::fs::write(&liar, &garbled).unwrap();
    assert!(weights::read(&liar)
        .unwrap_err()
        .to_string()
        .contains("not a valid safetensors"));
    // Offsets past the data.
    let mut short = random_tensors(&layout, 5);
    short[0].bytes.truncate(4);
    let off = dir.join("offsets.safetensors");
    write_safetensors(&off, &short, &[]);
    assert!(weights::read(&off)
        .unwrap_err()
        .to_string()
        .contains("not a valid safetensors"));
    // Too short to hold a header at all, a directory, a missing file.
    std::fs::write(&cut, [1u8, 2, 3]).unwrap();
    assert!(weights::read(&cut).is_err());
    assert!(weights::read(&dir)
        .unwrap_err()
        .to_string()
        .contains("not a regular file"));
    assert!(weights::read(&dir.join("nope.safetensors")).is_err());

    // Non-finite values and unsupported dtypes are named.
    let mut nan = random_tensors(&layout, 6);
    let t = nan
        .iter_mut()
        .find(|t| t.name == "layer2.1.conv2.weight")
        .unwrap();
    t.bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    write_safetensors(&path, &nan, &[]);
    let err = weights::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("layer2.1.conv2.weight") && err.contains("non-finite"),
        "{err}"
    );
    let mut half = random_tensors(&layout, 7);
    let t = half.iter_mut().find(|t| t.name == "bn1.weight").unwrap();
    t.dtype = "F16";
    t.bytes.truncate(t.bytes.len() / 2);
    write_safetensors(&path, &half, &[]);
    let err = weights::read(&path).unwrap_err().to_string();
    assert!(err.contains("bn1.weight") && err.contains("F16"), "{err}");
}

// ---------------------------------------------------------------- round trips through a run

/// A .npy array as numpy writes and reads it: the header's dtype and shape, then the data.
fn read_npy(path: &Path) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "data 64-byte aligned");
    let header = String::from_utf8(bytes[10..10 + len].to_vec()).unwrap();
    assert!(header.ends_with('\n'));
    (header, bytes[10 + len..].to_vec())
}

#[test]
fn export_then_import_reproduces_the_runs_embeddings_bit_for_bit() {
    let e = common::engine();
    let dir = temp("roundtrip");
    let run = dir.join("run");
    let cfg = cifar_eighth();
    train(&e, &cfg, &run, false, false).unwrap();

    let file = dir.join("encoder.safetensors");
    let export = |out: &Path, target: bool, heads: bool, force: bool| {
        interop::export(
            &ExportArgs {
                run: run.clone(),
                out: out.to_path_buf(),
                heads,
                target,
                force,
            },
            &byol::cli::Device::default(),
        )
    };
    export(&file, false, false, false).unwrap();
    let again = export(&file, false, false, false).unwrap_err().to_string();
    assert!(
        again.contains("exists") && again.contains("--force"),
        "{again}"
    );
    export(&file, false, false, true).unwrap();

    let (run_model, run_cfg) = EncoderSource::Run(&run)
        .open(&e, None, None, false)
        .unwrap();
    let (file_model, file_cfg) = EncoderSource::Weights(&file)
        .open(&e, Some(&cfg.dataset), None, false)
        .unwrap();
    assert_eq!(
        file_cfg.image_size, 16,
        "image size from the file's metadata"
    );
    assert_eq!(file_cfg.width_mult, 0.125);
    let test = || -> std::sync::Arc<dyn byol::data::ImageSet> {
        std::sync::Arc::from(byol::data::open(&cfg.dataset, byol::data::Split::Test).unwrap())
    };
    let (a, la) = embed::embeddings_of(&e, &run_model, test(), run_cfg.image_size, 64, 0).unwrap();
    let (b, lb) =
        embed::embeddings_of(&e, &file_model, test(), file_cfg.image_size, 64, 0).unwrap();
    assert_eq!(la, lb);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&a),
        bits(&b),
        "embeddings through the file differ from the run's"
    );

    // The metadata says how to rebuild and feed the network.
    let meta = weights::read(&file).unwrap().metadata;
    for (k, v) in [
        ("byol.stem", "cifar"),
        ("byol.width_mult", "0.125"),
        ("byol.encoder_norm", "batch"),
        ("byol.network", "online"),
        ("byol.input_mean", "0.485,0.456,0.406"),
    ] {
        assert_eq!(meta.get(k).map(String::as_str), Some(v), "{k}");
    }
    // The target differs from the online network after training; heads come along on request.
    let target = dir.join("target.safetensors");
    export(&target, true, true, false).unwrap();
    let t = weights::read(&target).unwrap();
    assert!(t.tensors.contains_key("projector.fc1.weight"));
    assert!(t.tensors.contains_key("predictor.fc2.bias"));
    assert!(t.tensors.contains_key("projector.norm.running_var"));
    let online = weights::read(&file).unwrap();
    assert!(!online.tensors.contains_key("projector.fc1.weight"));
    assert_ne!(t.tensors["conv1.weight"], online.tensors["conv1.weight"]);

    // `byol embed` writes the same embeddings and the labels as .npy.
    let npy = dir.join("emb.npy");
    interop::embed(
        &interop::EmbedArgs {
            encoder: interop::EncoderArgs {
                run: None,
                weights: Some(file.clone()),
                dataset: Some(cfg.dataset.clone()),
                image_size: None,
            },
            split: interop::SplitArg::Test,
            out: npy.clone(),
            force: false,
        },
        &byol::cli::Device::default(),
    )
    .unwrap();
    let n = la.len();
    let (header, data) = read_npy(&npy);
    assert!(
        header.contains("'descr': '<f4'")
            && header.contains(&format!("'shape': ({n}, {})", run_model.embedding_dim())),
        "{header}"
    );
    let floats: Vec<f32> = data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(bits(&floats), bits(&a));
    let (header, data) = read_npy(&interop::labels_path(&npy));
    assert!(
        header.contains("'descr': '<i8'") && header.contains(&format!("'shape': ({n},)")),
        "{header}"
    );
    let labels: Vec<i64> = data
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        labels,
        la.iter().map(|l| l.unwrap() as i64).collect::<Vec<_>>()
    );

    // A run started from the file starts from its encoder: with a vanishing learning rate the
    // convolutions stay where the file put them.
    let init_run = dir.join("init");
    let init_cfg = TrainConfig {
        init_from: Some(file.to_string_lossy().into_owned()),
        lr: 1e-12,
        weight_decay: 0.0,
        max_steps_per_epoch: 1,
        seed: 99,
        ..cfg.clone()
    };
    train(&e, &init_cfg, &init_run, false, false).unwrap();
    let started = dir.join("started.safetensors");
    interop::export(
        &ExportArgs {
            run: init_run,
            out: started.clone(),
            heads: false,
            target: false,
            force: false,
        },
        &byol::cli::Device::default(),
    )
    .unwrap();
    let started = weights::read(&started).unwrap();
    for name in [
        "conv1.weight",
        "layer3.0.downsample.0.weight",
        "layer4.1.conv2.weight",
    ] {
        let (x, y) = (&started.tensors[name].1, &online.tensors[name].1);
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "{name} moved by {worst}");
    }
}
