//! Shapes, strides and the broadcasting rule.
//!
//! A shape is a short list of extents kept inline (no heap allocation up to rank 4).
//! Broadcasting follows NumPy/PyTorch: shapes are aligned on the right, and an axis
//! of extent 1 stretches to match the other operand.

use smallvec::SmallVec;

/// Extents of a row-major tensor, outermost first. Rank ≤ 4 lives inline.
pub type Shape = SmallVec<[usize; 4]>;

/// Number of elements of a shape (1 for a scalar's empty shape).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides (in elements) of a contiguous tensor of this shape.
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
/// differs and neither is 1.
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
/// stretched axes get stride 0. `from` must broadcast to `to`.
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
    if numel(out_shape) == 0 {
        return;
    }
    let inner = out_shape[rank - 1];
    let (sa, sb) = (strides_a[rank - 1], strides_b[rank - 1]);
    let mut index: Shape = smallvec::smallvec![0; rank - 1];
    let (mut base_a, mut base_b) = (0usize, 0usize);
    loop {
        for j in 0..inner {
            f(base_a + j * sa, base_b + j * sb);
        }
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
    fn offsets_walk_broadcast_operands() {
        let out = [2, 3];
        let sa = broadcast_strides(&[2, 1], &out);
        let sb = broadcast_strides(&[3], &out);
        let mut seen = Vec::new();
        for_each_offset2(&out, &sa, &sb, |a, b| seen.push((a, b)));
        assert_eq!(seen, vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
    }
}
