//! Operand textures: the rgba32float textures that kernels reading their operands through texel
//! fetches take (matmul_texture.wgsl), filled by a packing pass (matmul_pack.wgsl). Each slot (one
//! operand role) keeps one texture that only grows, so a step allocates during its first products
//! and never after. Consecutive products may reuse a slot: wgpu orders the dispatches of a pass
//! and the texture uses between them.

use super::Engine;
use crate::error::{Error, Result};

pub use crate::device::OPERAND_TEXTURE_WIDTH;

/// Rows are allocated in multiples of this, so slightly larger operands reuse the texture.
const ROW_QUANTUM: u32 = 64;

struct Slot {
    view: wgpu::TextureView,
    rows: u32,
    // Kept so the texture lives as long as its view is handed out (wgpu keeps it alive for
    // recorded commands too).
    _texture: wgpu::Texture,
}

#[derive(Default)]
pub(super) struct OperandTextures {
    slots: Vec<Option<Slot>>,
    bytes: u64,
}

impl OperandTextures {
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Engine {
    /// Whether this adapter runs the kernels that read operands from textures.
    pub fn has_operand_textures(&self) -> bool {
        self.0.gpu.operand_textures
    }

    /// The most texels (4 floats each) one operand texture can hold.
    pub fn operand_texture_capacity(&self) -> u64 {
        OPERAND_TEXTURE_WIDTH as u64 * self.0.gpu.limits.max_texture_dimension_2d as u64
    }

    /// Bytes the operand textures hold (not counted in the buffer pool's statistics).
    pub fn operand_texture_bytes(&self) -> u64 {
        self.0.textures.borrow().bytes()
    }

    /// The view of operand texture `slot`, grown to hold at least `texels`.
    pub(crate) fn operand_texture(&self, slot: usize, texels: u64) -> Result<wgpu::TextureView> {
        if !self.has_operand_textures() {
            return Err(Error::Device(format!(
                "{} cannot write rgba32float storage textures: the texture kernels do not run here",
                self.0.gpu.info.name
            )));
        }
        if texels > self.operand_texture_capacity() {
            return Err(Error::Shape(format!(
                "an operand of {texels} texels exceeds the largest operand texture ({} texels)",
                self.operand_texture_capacity()
            )));
        }
        let mut textures = self.0.textures.borrow_mut();
        if textures.slots.len() <= slot {
            textures.slots.resize_with(slot + 1, || None);
        }
        let needed = texels.div_ceil(OPERAND_TEXTURE_WIDTH as u64).max(1) as u32;
        if let Some(s) = &textures.slots[slot] {
            if s.rows >= needed {
                return Ok(s.view.clone());
            }
        }
        let max_rows = self.0.gpu.limits.max_texture_dimension_2d;
        let rows = needed
            .div_ceil(ROW_QUANTUM)
            .saturating_mul(ROW_QUANTUM)
            .min(max_rows);
        let texture = self.0.gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("operand texture"),
            size: wgpu::Extent3d {
                width: OPERAND_TEXTURE_WIDTH,
                height: rows,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        let bytes = OPERAND_TEXTURE_WIDTH as u64 * rows as u64 * 16;
        let old = textures.slots[slot]
            .as_ref()
            .map_or(0, |s| OPERAND_TEXTURE_WIDTH as u64 * s.rows as u64 * 16);
        textures.bytes = textures.bytes - old + bytes;
        textures.slots[slot] = Some(Slot {
            view: view.clone(),
            rows,
            _texture: texture,
        });
        Ok(view)
    }
}
