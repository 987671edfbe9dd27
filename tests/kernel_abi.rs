//! Every kernel's Rust parameter struct against naga's reflection of its WGSL uniform block (with
//! the shared prelude in front, as the kernel cache compiles it): same members, same order, same
//! types, packed, `pitch` last for kernels launched 1-D. Needs no GPU. A reordered, renamed,
//! retyped, missing or extra field on either side fails here, not as a silently wrong value.

use byol::kernels::{check_params_abi, shader_source, validate_wgsl, KernelAbi, SHADERS};

fn all_abis() -> Vec<KernelAbi> {
    let mut v = byol::ops::KERNEL_ABI.to_vec();
    v.extend_from_slice(byol::optim::KERNEL_ABI);
    v.extend_from_slice(byol::data::augment::KERNEL_ABI);
    v
}

#[test]
fn every_params_struct_matches_its_shader() {
    for abi in all_abis() {
        let source = shader_source(abi.shader).unwrap();
        let (module, _) = validate_wgsl(abi.shader, &source).unwrap();
        check_params_abi(abi.shader, &module, abi.fields, abi.pitch)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            abi.size,
            4 * abi.fields.len(),
            "{}: the Rust struct is not packed 32-bit fields",
            abi.shader
        );
    }
}

#[test]
fn every_shader_with_a_parameter_block_has_exactly_one_struct() {
    let abis = all_abis();
    for (name, _) in SHADERS {
        let n = abis.iter().filter(|a| a.shader == *name).count();
        assert_eq!(n, 1, "{name}.wgsl is described by {n} parameter structs");
    }
}

#[test]
fn a_mismatch_is_reported_with_both_sides() {
    let wgsl = "struct Params { n: u32, scale: f32, pitch: u32 }\n\
                @group(0) @binding(0) var<uniform> p: Params;\n\
                @group(0) @binding(1) var<storage, read_write> y: array<f32>;\n\
                @compute @workgroup_size(1) fn main() { y[0] = p.scale * f32(p.n + p.pitch); }";
    let (module, _) = validate_wgsl("probe", wgsl).unwrap();
    check_params_abi("probe", &module, &[("n", "u32"), ("scale", "f32")], true).unwrap();
    for wrong in [
        &[("scale", "f32"), ("n", "u32")][..], // reordered
        &[("n", "u32"), ("scale", "u32")][..], // retyped
        &[("n", "u32")][..],                   // missing
        &[("n", "u32"), ("scale", "f32"), ("extra", "u32")][..],
    ] {
        let err = check_params_abi("probe", &module, wrong, true).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("probe.wgsl") && text.contains("scale: f32"),
            "{text}"
        );
    }
    // Launched 1-D the block must end with pitch; a block without one is refused.
    let no_pitch = wgsl.replace(", pitch: u32", "").replace(" + p.pitch", "");
    let (module, _) = validate_wgsl("probe", &no_pitch).unwrap();
    assert!(check_params_abi("probe", &module, &[("n", "u32"), ("scale", "f32")], true).is_err());
    check_params_abi("probe", &module, &[("n", "u32"), ("scale", "f32")], false).unwrap();
}
