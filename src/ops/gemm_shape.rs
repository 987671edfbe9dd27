//! The shape of one matrix product, shared by the matmul kernels' launchers (`matmul`,
//! `matmul_texture`).

/// Dimensions of one (batched) product: C[b] (m x n) = op(A[b]) (m x k) · op(B[b]) (k x n).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gemm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}
