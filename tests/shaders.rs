//! Every shader, with the shared prelude in front as the kernel cache compiles it, parses and
//! validates with naga; needs no GPU.

use byol::kernels::{shader_source, validate_wgsl, PRELUDE, SHADERS};

#[test]
fn every_shader_validates_without_a_gpu() {
    validate_wgsl("common", PRELUDE).unwrap_or_else(|e| panic!("{e}"));
    for (name, _) in SHADERS {
        let source = shader_source(name).unwrap();
        assert!(source.starts_with(PRELUDE), "{name}: no prelude");
        if let Err(e) = validate_wgsl(name, &source) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_file_in_shaders_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        if stem == "common" {
            continue; // the prelude, prepended to every shader
        }
        assert!(
            SHADERS.iter().any(|(n, _)| *n == stem),
            "{} is not listed in kernels::SHADERS",
            path.display()
        );
    }
}

#[test]
fn a_broken_shader_is_reported_with_its_name() {
    let err = validate_wgsl("broken", "fn f() -> f32 { return x; }").unwrap_err();
    assert!(err.to_string().contains("broken.wgsl"), "{err}");
}
