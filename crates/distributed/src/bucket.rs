//! Gradient buckets: parameters grouped into flat buffers of at most a given size, so
//! that averaging a model's gradients costs a few large all-reduces rather than one
//! small one per tensor (each collective pays a latency, whatever its size).
//!
//! As in PyTorch's DDP, buckets are filled from the last parameter backwards: backward
//! produces the last layer's gradients first, so that is the order in which buckets
//! become ready (what an all-reduce overlapped with backward would follow).

use std::ops::Range;

use tapegrad_autograd::Tensor;

/// PyTorch DDP's default `bucket_cap_mb` (25 MiB), in f32 elements.
pub const DEFAULT_BUCKET_ELEMENTS: usize = 25 * 1024 * 1024 / 4;

/// One bucket: which parameters, and where each starts in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Indices into the parameter list, in the order they are laid out.
    pub params: Vec<usize>,
    /// For each entry of `params`, its range in the flat buffer.
    pub ranges: Vec<Range<usize>>,
    /// Total elements.
    pub len: usize,
}

/// How a parameter list is cut into buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    /// The buckets, in reduction order.
    pub buckets: Vec<Bucket>,
}

impl BucketPlan {
    /// Groups parameters of `sizes` elements, last first, into buckets of at most
    /// `cap` elements; a parameter larger than `cap` gets a bucket of its own.
    pub fn new(sizes: &[usize], cap: usize) -> BucketPlan {
        let mut buckets = Vec::new();
        let mut current = Bucket {
            params: Vec::new(),
            ranges: Vec::new(),
            len: 0,
        };
        for (i, &n) in sizes.iter().enumerate().rev() {
            if !current.params.is_empty() && current.len + n > cap {
                buckets.push(std::mem::replace(
                    &mut current,
                    Bucket {
                        params: Vec::new(),
                        ranges: Vec::new(),
                        len: 0,
                    },
                ));
            }
            current.params.push(i);
            current.ranges.push(current.len..current.len + n);
            current.len += n;
        }
        if !current.params.is_empty() {
            buckets.push(current);
        }
        BucketPlan { buckets }
    }

    /// The plan for `params`' sizes.
    pub fn for_params(params: &[Tensor], cap: usize) -> BucketPlan {
        let sizes: Vec<usize> = params.iter().map(Tensor::numel).collect();
        BucketPlan::new(&sizes, cap)
    }

    /// The largest bucket's length: the size of the staging buffers.
    pub fn max_len(&self) -> usize {
        self.buckets.iter().map(|b| b.len).max().unwrap_or(0)
    }
}

/// Copies the gradients of `bucket`'s parameters into `flat` (zeros for a parameter
/// without a gradient) and returns, per parameter of the bucket, whether it had one.
pub fn flatten_grads(params: &[Tensor], bucket: &Bucket, flat: &mut [f32]) -> Vec<bool> {
    bucket
        .params
        .iter()
        .zip(&bucket.ranges)
        .map(|(&i, range)| match params[i].grad_ref() {
            Some(g) => {
                flat[range.clone()].copy_from_slice(&g);
                true
            }
            None => {
                flat[range.clone()].fill(0.0);
                false
            }
        })
        .collect()
}

/// Writes `flat · scale` back as the gradients of `bucket`'s parameters, except those
/// for which `keep_none` says no rank had a gradient (they stay `None`).
pub fn unflatten_grads(
    params: &[Tensor],
    bucket: &Bucket,
    flat: &[f32],
    divisor: f32,
    keep_none: impl Fn(usize) -> bool,
) {
    for (&i, range) in bucket.params.iter().zip(&bucket.ranges) {
        if keep_none(i) {
            continue;
        }
        let values = &flat[range.clone()];
        let p = &params[i];
        let has_grad = p.grad_ref().is_some();
        if has_grad {
            let mut g = p.grad_mut().expect("checked above");
            for (g, &v) in g.iter_mut().zip(values) {
                *g = v / divisor;
            }
        } else {
            let averaged: Vec<f32> = values.iter().map(|&v| v / divisor).collect();
            let grad = Tensor::from_vec(averaged, p.shape()).expect("the parameter's own shape");
            p.set_grad(Some(&grad)).expect("the parameter's own shape");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fill_from_the_last_parameter_and_respect_the_cap() {
        let plan = BucketPlan::new(&[4, 3, 5, 2], 7);
        let params: Vec<_> = plan.buckets.iter().map(|b| b.params.clone()).collect();
        assert_eq!(params, vec![vec![3, 2], vec![1, 0]]);
        assert_eq!(plan.buckets[0].ranges, vec![0..2, 2..7]);
        assert_eq!(plan.max_len(), 7);
    }

    #[test]
    fn a_parameter_over_the_cap_gets_its_own_bucket() {
        let plan = BucketPlan::new(&[2, 10, 2], 4);
        let params: Vec<_> = plan.buckets.iter().map(|b| b.params.clone()).collect();
        assert_eq!(params, vec![vec![2], vec![1], vec![0]]);
        assert_eq!(BucketPlan::new(&[], 4).buckets.len(), 0);
    }

    #[test]
    fn flatten_then_unflatten_round_trips_and_keeps_missing_gradients_missing() {
        let a = Tensor::zeros(&[2]).with_requires_grad(true);
        let b = Tensor::zeros(&[3]).with_requires_grad(true);
        let c = Tensor::zeros(&[1]).with_requires_grad(true);
        a.set_grad(Some(&Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap()))
            .unwrap();
        c.set_grad(Some(&Tensor::from_vec(vec![6.0], &[1]).unwrap()))
            .unwrap();
        let params = vec![a.clone(), b.clone(), c.clone()];
        let plan = BucketPlan::for_params(&params, 100);
        let bucket = &plan.buckets[0];
        let mut flat = vec![f32::NAN; bucket.len];
        let present = flatten_grads(&params, bucket, &mut flat);
        assert_eq!(present, vec![true, false, true]); // c, b, a
        assert_eq!(flat, vec![6.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
        unflatten_grads(&params, bucket, &flat, 2.0, |i| i == 1);
        assert_eq!(a.grad().unwrap().to_vec(), vec![0.5, 1.0]);
        assert!(b.grad().is_none());
        assert_eq!(c.grad().unwrap().to_vec(), vec![3.0]);
        unflatten_grads(&params, bucket, &flat, 1.0, |_| false);
        assert_eq!(b.grad().unwrap().to_vec(), vec![0.0; 3]);
    }
}
