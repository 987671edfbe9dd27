//! A buffer pool keyed by size class.
//!
//! Buffers freed while commands that use them are still being recorded wait in `pending` until the
//! next submit: only then may an upload (`queue.write_buffer`, which runs before the next submitted
//! command buffer) land in them safely. After the first step of a steady loop every request is served
//! from the free lists, which `stats().allocations` lets tests verify.

use std::collections::HashMap;

/// Counters that tests and benches read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// GPU buffers created so far.
    pub allocations: u64,
    /// Requests served by a free buffer.
    pub reuses: u64,
    /// Bytes held by all buffers the pool created (live or free).
    pub bytes_allocated: u64,
    /// Bytes currently handed out.
    pub bytes_in_use: u64,
    /// Largest `bytes_in_use` seen.
    pub peak_bytes_in_use: u64,
}

/// Rounds a byte count up to its size class: four classes per power of two, so at most 25% waste.
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(16);
    let bits = 64 - (bytes - 1).leading_zeros() as u64; // ceil(log2(bytes))
    if bits <= 4 {
        return 16;
    }
    let step = 1u64 << (bits - 3); // four steps between 2^(bits-1) and 2^bits
    bytes.div_ceil(step) * step
}

pub struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pending: Vec<(u64, wgpu::Buffer)>,
    stats: PoolStats,
    usage: wgpu::BufferUsages,
}

impl BufferPool {
    pub fn new() -> Self {
        BufferPool {
            free: HashMap::new(),
            pending: Vec::new(),
            stats: PoolStats::default(),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        }
    }

    /// A buffer of at least `bytes` bytes, and whether it is freshly created.
    pub fn acquire(&mut self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let class = size_class(bytes);
        self.stats.bytes_in_use += class;
        self.stats.peak_bytes_in_use = self.stats.peak_bytes_in_use.max(self.stats.bytes_in_use);
        if let Some(buf) = self.free.get_mut(&class).and_then(Vec::pop) {
            self.stats.reuses += 1;
            return buf;
        }
        self.stats.allocations += 1;
        self.stats.bytes_allocated += class;
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pooled"),
            size: class,
            usage: self.usage,
            mapped_at_creation: false,
        })
    }

    /// Returns a buffer; it becomes reusable after the next submit.
    pub fn release(&mut self, buf: wgpu::Buffer) {
        let class = buf.size();
        self.stats.bytes_in_use = self.stats.bytes_in_use.saturating_sub(class);
        self.pending.push((class, buf));
    }

    /// Called right after a submit: buffers released before it are free for anyone now.
    pub fn on_submit(&mut self) {
        for (class, buf) in self.pending.drain(..) {
            self.free.entry(class).or_default().push(buf);
        }
    }

    /// Destroys every free buffer (those in use stay).
    pub fn trim(&mut self) {
        for (_, bufs) in self.free.drain() {
            for b in bufs {
                self.stats.bytes_allocated -= b.size();
                b.destroy();
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_request_with_bounded_waste() {
        for bytes in [
            1u64,
            4,
            16,
            17,
            100,
            1000,
            4096,
            4097,
            1 << 20,
            (1 << 20) + 1,
            123_456_789,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(c as f64 <= (bytes.max(16) as f64) * 1.26, "{bytes} -> {c}");
            assert_eq!(c % 4, 0);
        }
    }
}
