//! An α-β cost model of ring all-reduce and of a data-parallel training step, to project
//! measurements made on one machine to many (`docs/distributed.md` shows the tables).
//!
//! A ring all-reduce of `M` bytes over `n` ranks runs `n − 1` reduce-scatter steps and
//! `n − 1` all-gather steps, each sending `M / n` bytes to the next rank: it takes
//! `2(n−1)·α + 2(n−1)/n · M·β`, where α is the latency of one message and β the time
//! per byte (the inverse of the link's bandwidth). The bandwidth term approaches
//! `2·M·β` as `n` grows: the ring's cost per rank hardly grows with the number of ranks,
//! which is why data parallelism scales while the global batch allows.

/// Latency and inverse bandwidth of one link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlphaBeta {
    /// Seconds per message.
    pub alpha: f64,
    /// Seconds per byte.
    pub beta: f64,
}

impl AlphaBeta {
    /// A link of `gbit_per_s` gigabits per second with `latency` seconds per message.
    pub fn link(gbit_per_s: f64, latency: f64) -> AlphaBeta {
        AlphaBeta {
            alpha: latency,
            beta: 8.0 / (gbit_per_s * 1e9),
        }
    }

    /// Seconds for a ring all-reduce of `bytes` over `n` ranks (0 on one rank).
    pub fn ring_all_reduce(&self, n: usize, bytes: f64) -> f64 {
        if n <= 1 {
            return 0.0;
        }
        let steps = 2.0 * (n as f64 - 1.0);
        steps * self.alpha + steps / n as f64 * bytes * self.beta
    }

    /// The bus bandwidth an all-reduce of `bytes` in `seconds` over `n` ranks reached
    /// (NCCL's convention: the bytes each rank must move, `2(n−1)/n · M`, per second).
    pub fn bus_bandwidth(n: usize, bytes: f64, seconds: f64) -> f64 {
        2.0 * (n as f64 - 1.0) / n as f64 * bytes / seconds
    }

    /// The least-squares α and β through measured `(ranks, bytes, seconds)` all-reduce
    /// times (at least two, with different sizes). Negative fits are clamped to 0.
    pub fn fit(samples: &[(usize, f64, f64)]) -> AlphaBeta {
        // t = a·x + b·y with x = 2(n−1), y = 2(n−1)/n · bytes: the 2×2 normal equations.
        let (mut xx, mut xy, mut yy, mut xt, mut yt) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(n, bytes, t) in samples {
            let x = 2.0 * (n as f64 - 1.0);
            let y = x / n as f64 * bytes;
            xx += x * x;
            xy += x * y;
            yy += y * y;
            xt += x * t;
            yt += y * t;
        }
        let det = xx * yy - xy * xy;
        if det.abs() < f64::MIN_POSITIVE {
            return AlphaBeta {
                alpha: 0.0,
                beta: if yy > 0.0 { yt / yy } else { 0.0 },
            };
        }
        let alpha = (yy * xt - xy * yt) / det;
        let beta = (xx * yt - xy * xt) / det;
        AlphaBeta {
            alpha: alpha.max(0.0),
            beta: beta.max(0.0),
        }
    }
}

/// The compute side of one training step on one rank, from one-process measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepModel {
    /// Forward and backward seconds per sample of the local batch.
    pub per_sample: f64,
    /// Seconds per step that do not shrink with the local batch: the optimizer update
    /// (every rank updates the whole model) and fixed overheads.
    pub fixed: f64,
    /// The share of `per_sample` spent in backward, which an overlapped all-reduce hides.
    pub backward_share: f64,
    /// Gradient bytes all-reduced per step.
    pub grad_bytes: f64,
}

/// A projected step on `n` ranks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    /// Seconds per step.
    pub step: f64,
    /// Seconds of it in the all-reduce not hidden behind backward.
    pub exposed_comm: f64,
    /// One rank's step time over `n` times this one (1 = perfect strong scaling).
    pub efficiency: f64,
}

impl StepModel {
    /// The step time for a global batch of `global_batch` over `n` ranks on `link`.
    /// With `overlap`, the all-reduce runs during backward and only what exceeds the
    /// backward time (or the last bucket's share, `last_bucket` of the bytes, which can
    /// only start when backward ends) is exposed.
    pub fn project(
        &self,
        link: &AlphaBeta,
        n: usize,
        global_batch: usize,
        overlap: bool,
        last_bucket: f64,
    ) -> Projection {
        let local = global_batch as f64 / n as f64;
        let compute = self.per_sample * local;
        let comm = link.ring_all_reduce(n, self.grad_bytes);
        let exposed = if overlap {
            let tail = link.ring_all_reduce(n, self.grad_bytes * last_bucket);
            (comm - compute * self.backward_share).max(tail)
        } else {
            comm
        };
        let step = compute + self.fixed + exposed;
        let one = self.per_sample * global_batch as f64 + self.fixed;
        Projection {
            step,
            exposed_comm: exposed,
            efficiency: one / (n as f64 * step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_cost_follows_the_formula() {
        let link = AlphaBeta {
            alpha: 1e-5,
            beta: 1e-9,
        };
        assert_eq!(link.ring_all_reduce(1, 1e6), 0.0);
        // n = 4: 6 latencies and 1.5 M bytes each way.
        let t = link.ring_all_reduce(4, 1e6);
        assert!((t - (6e-5 + 1.5e-3)).abs() < 1e-12, "{t}");
        let gbe = AlphaBeta::link(10.0, 0.0);
        assert!((gbe.beta - 8e-10).abs() < 1e-20);
    }

    #[test]
    fn the_fit_recovers_the_parameters_it_was_made_from() {
        let truth = AlphaBeta {
            alpha: 3e-6,
            beta: 2e-10,
        };
        let samples: Vec<_> = [(2, 1e3), (2, 1e6), (3, 4e5), (2, 5e6), (3, 8e6)]
            .iter()
            .map(|&(n, b)| (n, b, truth.ring_all_reduce(n, b)))
            .collect();
        let fitted = AlphaBeta::fit(&samples);
        assert!((fitted.alpha - truth.alpha).abs() < 1e-12, "{fitted:?}");
        assert!((fitted.beta - truth.beta).abs() < 1e-16, "{fitted:?}");
        let bw = AlphaBeta::bus_bandwidth(2, 1e6, 1e-3);
        assert!((bw - 1e9).abs() < 1.0);
    }

    #[test]
    fn overlap_hides_communication_and_one_rank_is_fully_efficient() {
        let model = StepModel {
            per_sample: 1e-5,
            fixed: 1e-3,
            backward_share: 0.6,
            grad_bytes: 4e6,
        };
        let link = AlphaBeta::link(10.0, 2e-5);
        let one = model.project(&link, 1, 256, false, 0.25);
        assert!((one.efficiency - 1.0).abs() < 1e-12);
        let plain = model.project(&link, 8, 256, false, 0.25);
        let hidden = model.project(&link, 8, 256, true, 0.25);
        assert!(hidden.step < plain.step);
        assert!(hidden.exposed_comm >= link.ring_all_reduce(8, 1e6));
        assert!(plain.efficiency < 1.0);
    }
}
