//! Shape arithmetic and the strided index walk every operation is built on.

use crate::error::{Result, TensorError, invalid};

/// Number of elements, with overflow reported as an error.
pub(crate) fn numel(op: &'static str, sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .filter(|&n| n <= isize::MAX as usize / 8)
        .ok_or_else(|| invalid(op, format!("shape {sizes:?} has too many elements")))
}

/// Row-major (C-order) strides for `sizes`.
pub(crate) fn contiguous_strides(sizes: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; sizes.len()];
    for d in (0..sizes.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * sizes[d + 1].max(1);
    }
    strides
}

/// The broadcast shape of `a` and `b` (NumPy/Torch rules: align trailing
/// dimensions; each pair must be equal or contain a 1).
pub(crate) fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(TensorError::ShapeMismatch {
                    op,
                    lhs: a.to_vec(),
                    rhs: b.to_vec(),
                });
            }
        };
    }
    Ok(out)
}

/// Strides that read a tensor of `sizes`/`strides` as if expanded to `target`
/// (which must be a broadcast of `sizes`): stride 0 along broadcast dimensions.
pub(crate) fn broadcast_strides(
    sizes: &[usize],
    strides: &[usize],
    target: &[usize],
) -> Vec<usize> {
    let lead = target.len() - sizes.len();
    (0..target.len())
        .map(|i| {
            if i < lead || (sizes[i - lead] == 1 && target[i] != 1) {
                0
            } else {
                strides[i - lead]
            }
        })
        .collect()
}

/// Calls `f` with the storage offsets of `N` operands for every index of `sizes`,
/// in row-major order. Operand `k` has strides `strides[k]` and base offset
/// `offsets[k]`. A 0-d shape visits one element; a shape with a 0 visits none.
pub(crate) fn walk<const N: usize>(
    sizes: &[usize],
    strides: [&[usize]; N],
    offsets: [usize; N],
    mut f: impl FnMut([usize; N]),
) {
    if sizes.contains(&0) {
        return;
    }
    let nd = sizes.len();
    if nd == 0 {
        f(offsets);
        return;
    }
    let inner = sizes[nd - 1];
    let inner_stride: [usize; N] = std::array::from_fn(|k| strides[k][nd - 1]);
    let mut index = vec![0usize; nd - 1];
    let mut base = offsets;
    loop {
        let mut o = base;
        for _ in 0..inner {
            f(o);
            for k in 0..N {
                o[k] += inner_stride[k];
            }
        }
        // Advance the odometer over the outer dimensions.
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            for k in 0..N {
                base[k] += strides[k][d];
            }
            if index[d] < sizes[d] {
                break;
            }
            for k in 0..N {
                base[k] -= strides[k][d] * sizes[d];
            }
            index[d] = 0;
        }
    }
}

/// Strides for viewing `sizes`/`strides` as `new_sizes` without copying, if the
/// memory layout allows (Torch's rule: each group of merged or split dimensions
/// must be contiguous within itself).
pub(crate) fn view_strides(
    sizes: &[usize],
    strides: &[usize],
    new_sizes: &[usize],
) -> Option<Vec<usize>> {
    if sizes.is_empty() || sizes.contains(&0) {
        return Some(contiguous_strides(new_sizes));
    }
    let mut new_strides = vec![0usize; new_sizes.len()];
    let mut view_d = new_sizes.len() as isize - 1;
    let mut chunk_base = strides[sizes.len() - 1];
    let (mut tensor_numel, mut view_numel) = (1usize, 1usize);
    for d in (0..sizes.len()).rev() {
        tensor_numel *= sizes[d];
        let chunk_ends =
            d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base);
        if chunk_ends {
            while view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d as usize] == 1) {
                new_strides[view_d as usize] = view_numel * chunk_base;
                view_numel *= new_sizes[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if d > 0 {
                chunk_base = strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    (view_d == -1).then_some(new_strides)
}

/// Checks `dim < rank`.
pub(crate) fn check_dim(op: &'static str, dim: usize, rank: usize) -> Result<()> {
    if dim < rank {
        Ok(())
    } else {
        Err(TensorError::DimOutOfRange { op, dim, rank })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shapes("t", &[3, 1], &[4]).unwrap(), [3, 4]);
        assert_eq!(broadcast_shapes("t", &[], &[2, 2]).unwrap(), [2, 2]);
        assert!(broadcast_shapes("t", &[3], &[4]).is_err());
        assert_eq!(broadcast_strides(&[3, 1], &[1, 1], &[2, 3, 4]), [0, 1, 0]);
    }

    #[test]
    fn walk_visits_in_row_major_order() {
        let mut seen = Vec::new();
        walk(&[2, 3], [&[1, 2]], [5], |[o]| seen.push(o));
        assert_eq!(seen, [5, 7, 9, 6, 8, 10]);
        let mut n = 0;
        walk(&[], [&[]], [0], |_| n += 1);
        walk(&[2, 0], [&[1, 1]], [0], |_| n += 10);
        assert_eq!(n, 1);
    }

    #[test]
    fn views_follow_torch_rules() {
        // Contiguous: any regrouping works.
        assert_eq!(
            view_strides(&[2, 3, 4], &[12, 4, 1], &[6, 4]),
            Some(vec![4, 1])
        );
        // Transposed 2x3 (strides 1, 2) cannot be flattened...
        assert_eq!(view_strides(&[3, 2], &[1, 3], &[6]), None);
        // ...but can gain unit dimensions.
        assert_eq!(
            view_strides(&[3, 2], &[1, 3], &[3, 1, 2]).map(|s| (s[0], s[2])),
            Some((1, 3))
        );
        assert_eq!(contiguous_strides(&[2, 0, 3]), [3, 3, 1]);
    }
}
