//! Uploads and downloads: writes into buffers (ordered against recorded commands) and the one
//! place the engine waits for the GPU, reading a buffer back.

use super::Engine;
use crate::error::{Error, Result};

impl Engine {
    /// Writes bytes into a buffer before the next submitted commands run. Flushes first, so commands
    /// recorded earlier still see the old contents.
    pub(crate) fn write(&self, buf: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.0.rec.borrow().encoder.is_some() {
            self.flush()?;
        }
        self.0.gpu.queue.write_buffer(buf, offset, bytes);
        Ok(())
    }

    /// Writes bytes into a buffer that no recorded command uses yet (a fresh allocation).
    pub(crate) fn write_fresh(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        self.0.gpu.queue.write_buffer(buf, 0, bytes);
    }

    /// Copies `bytes` from a buffer back to the CPU. The only place the engine waits for the GPU.
    pub(crate) fn read(&self, buf: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let padded = bytes.div_ceil(4) * 4;
        let class = crate::pool::size_class(padded);
        let staging = self
            .0
            .staging
            .borrow_mut()
            .get_mut(&class)
            .and_then(Vec::pop)
            .unwrap_or_else(|| {
                self.0.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staging"),
                    size: class,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
        self.copy(buf, offset, &staging, 0, padded);
        self.flush()?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..padded, move |r| {
            let _ = tx.send(r);
        });
        self.0
            .gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()?;
        rx.recv()
            .map_err(|_| Error::Device("buffer map callback never ran".into()))?
            .map_err(|e| Error::Device(format!("mapping a buffer for download failed: {e}")))?;
        let data = staging
            .get_mapped_range(0..padded)
            .map_err(|e| Error::Device(format!("reading a mapped buffer failed: {e:?}")))?
            [..bytes as usize]
            .to_vec();
        staging.unmap();
        self.0
            .staging
            .borrow_mut()
            .entry(class)
            .or_default()
            .push(staging);
        Ok(data)
    }
}
