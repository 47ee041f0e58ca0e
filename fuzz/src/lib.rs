//! What the fuzz targets do with whatever decodes: use it, so that a shape that
//! decodes but cannot be used (an element count that wraps, a bound the GEMM would
//! read past) is found by fuzzing, not by users.

use tapegrad_autograd::Tensor;
use tapegrad_io::StateDict;

/// Builds every decoded tensor and runs ops that read all of its elements through the
/// shape arithmetic and the GEMM's unsafe kernels: a reshape, a product with its own
/// transpose, and, for matrices, the product of the matrix with its transpose. Errors
/// are fine; a panic or a crash is a bug.
pub fn exercise(state: &StateDict) {
    let _ = state.validate();
    for t in &state.tensors {
        let Ok(x) = Tensor::from_slice(&t.data, &t.shape) else {
            continue;
        };
        if let Ok(row) = x.try_reshape(&[1, x.numel()]) {
            if let Ok(col) = row.try_transpose(0, 1) {
                let _ = row.try_matmul(&col);
            }
        }
        if x.rank() == 2 {
            if let Ok(xt) = x.try_transpose(0, 1) {
                // Output [rows, rows]: keep it small enough for the fuzzer's memory limit.
                if x.shape()[0] <= 1 << 10 {
                    let _ = x.try_matmul(&xt);
                }
                let _ = xt.try_matmul(&x);
            }
        }
        let _ = x.try_reshape(&t.shape);
    }
}
