//! Recording: dispatches go into one open compute pass, their parameters into a CPU-side arena
//! written as one uniform buffer right before the submit; copies end the pass; `flush` submits.

use super::{BufSlice, Engine, Recorder, MAX_PARAM_WORDS, PARAM_SLOT};
use crate::error::{Error, Result};
use crate::kernels::{BindingKind, Kernel, KernelParams};

impl Engine {
    // ---- recording -----------------------------------------------------------------------------

    /// Records one dispatch over a grid of `workgroups`. `bufs` are the storage bindings in
    /// ascending binding order; `params` become the kernel's uniform at binding 0.
    pub fn dispatch<P: KernelParams>(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &P,
        bufs: &[BufSlice],
        workgroups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_textured(shader, entry, constants, params, bufs, &[], workgroups)
    }

    /// [`Engine::dispatch`] for kernels that also bind textures: `textures` fill the texture
    /// bindings in ascending binding order, as `bufs` fill the storage ones.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_textured<P: KernelParams>(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &P,
        bufs: &[BufSlice],
        textures: &[&wgpu::TextureView],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let words: &[u32] = bytemuck::cast_slice(bytemuck::bytes_of(params));
        let abi = (P::FIELDS, false);
        let binds = (bufs, textures);
        self.dispatch_words(shader, entry, constants, abi, words, binds, workgroups)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_words(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        abi: (&'static [(&'static str, &'static str)], bool),
        params: &[u32],
        (bufs, textures): (&[BufSlice], &[&wgpu::TextureView]),
        workgroups: [u32; 3],
    ) -> Result<()> {
        let max_wg = self.0.gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max_wg) {
            return Err(Error::Shape(format!(
                "{shader}::{entry}: grid {workgroups:?} exceeds {max_wg} workgroups per dimension"
            )));
        }
        if workgroups.contains(&0) {
            return Ok(());
        }
        if params.len() > MAX_PARAM_WORDS {
            return Err(Error::Invalid(format!(
                "{shader}::{entry}: too many params"
            )));
        }
        let kernel =
            self.0
                .kernels
                .borrow_mut()
                .get(&self.0.gpu.device, shader, entry, constants, abi)?;
        let count = |texture: bool| {
            kernel
                .bindings
                .iter()
                .filter(|(_, k)| *k != BindingKind::Params && k.is_texture() == texture)
                .count()
        };
        let (storage_count, texture_count) = (count(false), count(true));
        if storage_count != bufs.len() || texture_count != textures.len() {
            return Err(Error::Invalid(format!(
                "{shader}::{entry} takes {storage_count} buffers and {texture_count} textures, got {} and {}",
                bufs.len(),
                textures.len()
            )));
        }
        if self.0.rec.borrow().pending >= self.0.options.max_pending_dispatches {
            self.flush()?;
        }
        if self.0.options.profile {
            self.sync()?;
            let t0 = std::time::Instant::now();
            self.record_dispatch(&kernel, params, (bufs, textures), workgroups);
            self.sync()?;
            let mut prof = self.0.profile.borrow_mut();
            let e = prof.entry(format!("{shader}::{entry}")).or_default();
            e.0 += 1;
            e.1 += t0.elapsed().as_secs_f64();
            return Ok(());
        }
        self.record_dispatch(&kernel, params, (bufs, textures), workgroups);
        Ok(())
    }

    /// One-dimensional launch over `n` invocations of a 256-wide kernel, folded into a 2-D grid when
    /// `n` exceeds one dimension's limit; kernels recover the index as `gid.x + gid.y * nx * 256`
    /// (`flat_index` in shaders/common.wgsl) with `nx` from the `pitch` appended to `params`.
    pub fn dispatch_1d<P: KernelParams>(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &P,
        bufs: &[BufSlice],
        n: u64,
    ) -> Result<()> {
        self.dispatch_1d_textured(shader, entry, constants, params, bufs, &[], n)
    }

    /// [`Engine::dispatch_1d`] for kernels that also bind textures (see `dispatch_textured`).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_1d_textured<P: KernelParams>(
        &self,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &P,
        bufs: &[BufSlice],
        textures: &[&wgpu::TextureView],
        n: u64,
    ) -> Result<()> {
        let groups = n.div_ceil(256);
        let max = self.0.gpu.limits.max_compute_workgroups_per_dimension as u64;
        let (x, y) = if groups <= max {
            (groups, 1)
        } else {
            (max, groups.div_ceil(max))
        };
        let mut p: Vec<u32> = bytemuck::cast_slice(bytemuck::bytes_of(params)).to_vec();
        p.push(x as u32); // the kernel's row pitch in workgroups
        let abi = (P::FIELDS, true);
        self.dispatch_words(
            shader,
            entry,
            constants,
            abi,
            &p,
            (bufs, textures),
            [x as u32, y as u32, 1],
        )
    }

    fn record_dispatch(
        &self,
        kernel: &Kernel,
        params: &[u32],
        (bufs, textures): (&[BufSlice], &[&wgpu::TextureView]),
        workgroups: [u32; 3],
    ) {
        let device = &self.0.gpu.device;
        let mut rec = self.0.rec.borrow_mut();
        let slot = rec.pending as u64 * PARAM_SLOT;
        let mut entries = Vec::with_capacity(bufs.len() + 1);
        let mut storage = bufs.iter();
        let mut views = textures.iter();
        for (binding, kind) in &kernel.bindings {
            let resource = if kind.is_texture() {
                wgpu::BindingResource::TextureView(views.next().expect("binding count checked"))
            } else if *kind == BindingKind::Params {
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &rec.params_buf,
                    offset: 0,
                    size: std::num::NonZeroU64::new(PARAM_SLOT),
                })
            } else {
                let s = storage.next().expect("binding count checked");
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: s.buffer,
                    offset: s.offset,
                    size: std::num::NonZeroU64::new(s.size),
                })
            };
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource,
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut words = [0u32; (PARAM_SLOT / 4) as usize];
        words[..params.len()].copy_from_slice(params);
        rec.params.extend_from_slice(bytemuck::cast_slice(&words));
        if rec.encoder.is_none() {
            rec.encoder = Some(device.create_command_encoder(&Default::default()));
        }
        if rec.pass.is_none() {
            open_pass(&mut rec);
        }
        let pass = rec.pass.as_mut().expect("pass just opened");
        pass.set_pipeline(&kernel.pipeline);
        let offsets: &[u32] = if kernel.has_params {
            &[slot as u32]
        } else {
            &[]
        };
        pass.set_bind_group(0, &bind_group, offsets);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        rec.pending += 1;
        let mut s = self.0.stats.get();
        s.dispatches += 1;
        self.0.stats.set(s);
    }

    /// Records a buffer-to-buffer copy (ends the open compute pass).
    pub(crate) fn copy(
        &self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        let mut rec = self.0.rec.borrow_mut();
        rec.pass = None;
        if rec.encoder.is_none() {
            rec.encoder = Some(
                self.0
                    .gpu
                    .device
                    .create_command_encoder(&Default::default()),
            );
        }
        rec.encoder
            .as_mut()
            .expect("encoder just created")
            .copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes);
    }

    /// Submits everything recorded so far. Does not wait.
    pub fn flush(&self) -> Result<()> {
        let (encoder, params, params_buf) = {
            let mut rec = self.0.rec.borrow_mut();
            rec.pass = None; // ends the pass
            let enc = rec.encoder.take();
            let params = std::mem::take(&mut rec.params);
            rec.pending = 0;
            (enc, params, rec.params_buf.clone())
        };
        if let Some(encoder) = encoder {
            if !params.is_empty() {
                self.0.gpu.queue.write_buffer(&params_buf, 0, &params);
            }
            self.0.gpu.queue.submit([encoder.finish()]);
            let mut s = self.0.stats.get();
            s.submits += 1;
            self.0.stats.set(s);
        }
        self.0.pool.borrow_mut().on_submit();
        self.check_errors()
    }

    /// Submits and waits until the GPU is idle.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.0
            .gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()
    }

    pub(super) fn check_errors(&self) -> Result<()> {
        let mut errs = self
            .0
            .errors
            .lock()
            .map_err(|_| Error::Device("error sink poisoned".into()))?;
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.join("; ");
        errs.clear();
        Err(Error::Device(msg))
    }
}

/// Opens the recorder's compute pass (with the timer's timestamp writes while one is set).
pub(super) fn open_pass(rec: &mut Recorder) {
    let begin_written = rec.timer.as_ref().is_some_and(|(_, started)| *started);
    let timestamp_writes = rec
        .timer
        .as_ref()
        .map(|(q, _)| wgpu::ComputePassTimestampWrites {
            query_set: q,
            beginning_of_pass_write_index: (!begin_written).then_some(0),
            end_of_pass_write_index: Some(1),
        });
    let enc = rec
        .encoder
        .as_mut()
        .expect("encoder exists before a pass opens");
    let pass = enc
        .begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes,
        })
        .forget_lifetime();
    rec.pass = Some(pass);
    if let Some((_, started)) = rec.timer.as_mut() {
        *started = true;
    }
}
