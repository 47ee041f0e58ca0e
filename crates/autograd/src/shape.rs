//! Shapes, strides and the broadcasting rule.
//!
//! A shape is a short list of extents kept inline (no heap allocation up to rank 4).
//! Broadcasting follows NumPy/PyTorch: shapes are aligned on the right, and an axis
//! of extent 1 stretches to match the other operand.
//!
//! Shape arithmetic never wraps. A shape is *valid* when the product of its extents,
//! with zeros counted as ones, is at most [`MAX_ELEMENTS`]; every tensor's shape is
//! valid (each place a shape enters checks it with [`try_numel`]), so every element
//! count, stride and offset computed from it fits in a `usize`, and an `isize` too.
//! Counting zeros as ones matters: `[0, 2^40, 2^40]` holds no element, but its
//! outer stride 2^80 would wrap.

use smallvec::SmallVec;

use crate::error::{Result, TensorError};

/// Extents of a row-major tensor, outermost first. Rank ≤ 4 lives inline.
pub type Shape = SmallVec<[usize; 4]>;

/// Most elements a tensor may have: its f32 buffer must fit in `isize::MAX` bytes,
/// Rust's limit for one allocation (2⁶¹ − 1 on 64-bit targets).
pub const MAX_ELEMENTS: usize = isize::MAX as usize / std::mem::size_of::<f32>();

/// Number of elements of a shape (1 for a scalar's empty shape), or `None` when the
/// shape is not valid: the product of its extents, zeros counted as ones, overflows or
/// exceeds [`MAX_ELEMENTS`].
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    let mut bound = 1usize;
    let mut count = 1usize;
    for &d in shape {
        bound = bound.checked_mul(d.max(1)).filter(|&b| b <= MAX_ELEMENTS)?;
        count *= d; // ≤ bound: cannot overflow
    }
    Some(count)
}

/// [`checked_numel`] with an error naming the op and the shape.
pub fn try_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    checked_numel(shape).ok_or_else(|| TensorError::ShapeTooLarge {
        op,
        shape: shape.to_vec(),
    })
}

/// Number of elements of a valid shape, such as any tensor's or a part of one (1 for a
/// scalar's empty shape). Panics, rather than wrapping, on a shape that is not valid:
/// shapes from outside go through [`try_numel`] first.
#[track_caller]
pub fn numel(shape: &[usize]) -> usize {
    match checked_numel(shape) {
        Some(n) => n,
        None => panic!("shape {shape:?} is too large: the product of its extents overflows"),
    }
}

/// Row-major strides (in elements) of a contiguous tensor of this shape, which must be
/// valid (see the module's note), so no stride overflows.
pub fn contiguous_strides(shape: &[usize]) -> Shape {
    let mut strides: Shape = smallvec::smallvec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// The shape two operands broadcast to, or `None` when some aligned pair of axes
/// differs and neither is 1. The result may be too large even when both operands are
/// valid (`[2^32, 1]` with `[1, 2^32]`): callers check it with [`try_numel`].
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let mut out: Shape = smallvec::smallvec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides that read a tensor of shape `from` as if it had the (broadcast) shape `to`:
/// stretched axes get stride 0. `from` must broadcast to `to`, and both be valid.
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Shape {
    let own = contiguous_strides(from);
    let offset = to.len() - from.len();
    let mut strides: Shape = smallvec::smallvec![0; to.len()];
    for i in 0..from.len() {
        if from[i] != 1 || to[i + offset] == 1 {
            strides[i + offset] = own[i];
        }
    }
    strides
}

/// Calls `f(offset_a, offset_b)` for every element of `out_shape` in row-major order,
/// with the element offsets into two operands read through `strides_a` and `strides_b`.
/// The innermost axis runs as a plain loop; only the outer axes do index arithmetic.
pub fn for_each_offset2(
    out_shape: &[usize],
    strides_a: &[usize],
    strides_b: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    let rank = out_shape.len();
    if rank == 0 {
        f(0, 0);
        return;
    }
    let inner = out_shape[rank - 1];
    let (sa, sb) = (strides_a[rank - 1], strides_b[rank - 1]);
    for_each_row2(out_shape, strides_a, strides_b, |base_a, base_b| {
        for j in 0..inner {
            f(base_a + j * sa, base_b + j * sb);
        }
    });
}

/// Calls `f(offset_a, offset_b)` once per row (innermost axis) of `out_shape`, in
/// row-major order, with the offsets of the row's first element in two operands read
/// through `strides_a` and `strides_b`; a scalar shape is one row. The caller walks the
/// row itself, so a contiguous or broadcast row becomes a slice loop the compiler
/// vectorises instead of a call per element.
pub fn for_each_row2(
    out_shape: &[usize],
    strides_a: &[usize],
    strides_b: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    let rank = out_shape.len();
    if rank == 0 {
        f(0, 0);
        return;
    }
    if numel(out_shape) == 0 {
        return;
    }
    let mut index: Shape = smallvec::smallvec![0; rank - 1];
    let (mut base_a, mut base_b) = (0usize, 0usize);
    loop {
        f(base_a, base_b);
        // Advance the outer multi-index like an odometer.
        let mut axis = rank - 1;
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            index[axis] += 1;
            base_a += strides_a[axis];
            base_b += strides_b[axis];
            if index[axis] < out_shape[axis] {
                break;
            }
            base_a -= index[axis] * strides_a[axis];
            base_b -= index[axis] * strides_b[axis];
            index[axis] = 0;
        }
    }
}

/// Appends to `out` the elements of `x` read through `strides` in the row-major order
/// of `shape`; rows whose elements are adjacent in `x` are copied as slices.
pub fn gather_strided(x: &[f32], shape: &[usize], strides: &[usize], out: &mut Vec<f32>) {
    let Some(&inner) = shape.last() else {
        out.push(x[0]);
        return;
    };
    let s = strides[strides.len() - 1];
    let zeros: Shape = smallvec::smallvec![0; shape.len()];
    for_each_row2(shape, strides, &zeros, |base, _| {
        if s == 1 {
            out.extend_from_slice(&x[base..base + inner]);
        } else {
            out.extend((0..inner).map(|j| x[base + j * s]));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[3, 4], &[4]).unwrap().as_slice(), &[3, 4]);
        assert_eq!(
            broadcast_shapes(&[2, 3, 4], &[3, 1]).unwrap().as_slice(),
            &[2, 3, 4]
        );
        assert_eq!(broadcast_shapes(&[1], &[5, 1]).unwrap().as_slice(), &[5, 1]);
        assert_eq!(broadcast_shapes(&[], &[2]).unwrap().as_slice(), &[2]);
        assert!(broadcast_shapes(&[3, 4], &[3]).is_none());
    }

    #[test]
    fn element_counts_never_wrap() {
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[2, 0, 3]), Some(0));
        assert_eq!(checked_numel(&[3, 4]), Some(12));
        // The shapes: each wraps to a small count with a plain product.
        let k = (1usize << 62) + 1;
        assert_eq!(checked_numel(&[100, k]), None);
        assert_eq!(checked_numel(&[1 << 32, 1 << 32, 2]), None);
        assert_eq!(checked_numel(&[3, 6148914691236517206]), None);
        // Empty but with an outer stride that would wrap.
        assert_eq!(checked_numel(&[0, 1 << 40, 1 << 40]), None);
        assert_eq!(checked_numel(&[MAX_ELEMENTS]), Some(MAX_ELEMENTS));
        assert_eq!(checked_numel(&[MAX_ELEMENTS + 1]), None);
        assert_eq!(checked_numel(&[usize::MAX]), None);
        let err = try_numel("zeros", &[1 << 32, 1 << 32, 2]).unwrap_err();
        assert!(
            err.to_string().contains("zeros")
                && err.to_string().contains("[4294967296, 4294967296, 2]")
        );
    }

    #[test]
    #[should_panic(expected = "too large")]
    fn numel_panics_instead_of_wrapping() {
        numel(&[3, 6148914691236517206]);
    }

    #[test]
    fn offsets_walk_broadcast_operands() {
        let out = [2, 3];
        let sa = broadcast_strides(&[2, 1], &out);
        let sb = broadcast_strides(&[3], &out);
        let mut seen = Vec::new();
        for_each_offset2(&out, &sa, &sb, |a, b| seen.push((a, b)));
        assert_eq!(seen, vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        let mut rows = Vec::new();
        for_each_row2(&out, &sa, &sb, |a, b| rows.push((a, b)));
        assert_eq!(rows, vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn gather_reads_permuted_and_strided_rows() {
        // x is [2, 3] row-major; read it transposed ([3, 2], inner stride 3) and as
        // itself (inner stride 1, copied by rows).
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let mut out = Vec::new();
        gather_strided(&x, &[3, 2], &[1, 3], &mut out);
        assert_eq!(out, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        out.clear();
        gather_strided(&x, &[2, 3], &[3, 1], &mut out);
        assert_eq!(out, x);
        out.clear();
        gather_strided(&[7.0], &[], &[], &mut out);
        assert_eq!(out, [7.0]);
    }
}
