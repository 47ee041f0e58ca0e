//! The forward and backward of one (batch, head) pair of the fused attention, on
//! matrices read in place: each operand is a [`Rows`] view (rows `ld` floats apart), so
//! `qkv_attention` reads a head's columns straight out of the packed `[T, 3E]`
//! projection and writes its output and gradients straight into their columns, with no
//! gather or scatter copies.
//!
//! The forward walks the keys in tiles of `TILE_K` for a tile of `TILE_Q` queries with
//! an online softmax (running maximum, sum and output per query row) and saves the
//! log-sum-exp of each row. The backward recomputes each tile's probabilities from it
//! and forms `dV += Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))·scale`,
//! `dQ += dS·K`, `dK += dSᵀ·Q`. When all the keys fit one tile (`S ≤ TILE_K`, a GPT's
//! short context), the forward needs no online softmax: it normalises each row of
//! probabilities as soon as its one score row is known and forms `out = P·V` from them
//! (`forward_one_tile`); it can then save the probabilities themselves (`L × S` floats,
//! [`saves_probs`]), and the backward skips `Q·Kᵀ`, the key transpose and the
//! exponentials. Every product goes through `attention_gemm`, whose
//! second operand needs contiguous rows: the key (and value) tile is transposed into
//! scratch once per tile for `Q·Kᵀ` (and `dO·Vᵀ`). Under a causal mask the products
//! skip the dead triangle of the diagonal tiles (`Live`).

use crate::ops::attention_gemm::{self, product, Live};
use crate::ops::attention_kernels::{
    dot_of, key_end, live_keys, row_max, shift_row, sum_of, Geometry, PairMask, TILE_K, TILE_Q,
};
use crate::ops::gemm::MatRef;
use crate::ops::vecmath::exp_in_place;

/// A matrix whose rows are contiguous and `ld` floats apart: row `i` starts at
/// `data[i·ld]`.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    data: &'a [f32],
    ld: usize,
}

impl<'a> Rows<'a> {
    /// The rows of `data`, `ld` floats apart.
    pub(crate) fn new(data: &'a [f32], ld: usize) -> Self {
        Rows { data, ld }
    }

    /// Row `i`, `width` floats.
    fn row(self, i: usize, width: usize) -> &'a [f32] {
        &self.data[i * self.ld..][..width]
    }

    /// The rows from row `i` on.
    fn from(self, i: usize) -> &'a [f32] {
        &self.data[(i * self.ld).min(self.data.len())..]
    }

    /// The rows from row `i` on, as the first operand of a product.
    fn mat_from(self, i: usize) -> MatRef<'a> {
        MatRef {
            data: self.from(i),
            row_stride: self.ld,
            col_stride: 1,
        }
    }
}

/// Where a pair's three gradients go.
pub(crate) enum PairGrads<'a> {
    /// `dq` (L × D), `dk` (S × D), `dv` (S × Dv), each contiguous.
    Separate([&'a mut [f32]; 3]),
    /// Columns of one matrix with rows `ld` apart: gradient `w` in the columns from
    /// `offsets[w]` on (`qkv_attention`'s `[T, 3E]` gradient).
    Packed {
        data: &'a mut [f32],
        ld: usize,
        offsets: [usize; 3],
    },
}

impl PairGrads<'_> {
    /// Gradient `w` (0: q, 1: k, 2: v) from row `i` on, and its row stride; `width` is
    /// its row length (the stride of a separate one).
    fn rows_from(&mut self, w: usize, i: usize, width: usize) -> (&mut [f32], usize) {
        match self {
            PairGrads::Separate(parts) => {
                let part = &mut *parts[w];
                let at = (i * width).min(part.len());
                (&mut part[at..], width)
            }
            PairGrads::Packed { data, ld, offsets } => {
                let at = (offsets[w] + i * *ld).min(data.len());
                (&mut data[at..], *ld)
            }
        }
    }

    /// Sets rows `from .. to` of gradient `w` (rows of `width`) to zero.
    fn zero_rows(&mut self, w: usize, (from, to): (usize, usize), width: usize) {
        for i in from..to {
            let (dst, _) = self.rows_from(w, i, width);
            dst[..width].fill(0.0);
        }
    }
}

/// Whether [`forward_pair`] can save a pair's probabilities for [`backward_pair`]: when
/// every key fits one tile, each query row's probabilities are final after its one
/// tile (no later tile rescales them).
pub(crate) fn saves_probs(g: &Geometry) -> bool {
    g.s <= TILE_K
}

/// Scratch floats [`forward_pair`] needs.
pub(crate) fn forward_scratch_len(g: &Geometry) -> usize {
    TILE_Q * TILE_K + g.d * TILE_K
}

/// Scratch floats [`backward_pair`] needs.
pub(crate) fn backward_scratch_len(g: &Geometry) -> usize {
    2 * TILE_Q * TILE_K + g.l + (g.d + g.dv) * TILE_K
}

/// Rows `c0 .. c0 + keys` of `src` (each `width` long) transposed into `dst`
/// (`width` × `keys`, row-major).
fn transpose(src: Rows, c0: usize, keys: usize, width: usize, dst: &mut [f32]) {
    attention_gemm::transpose((src.from(c0), src.ld), keys, width, dst);
}

/// `e^x` of the first `live` elements of a score row whose others are 0. The live
/// part is rounded up to whole 8-float vectors, the dead elements it takes in set to
/// −∞ (whose exponential is exactly 0): a short row's tail would otherwise go through
/// the vector exp's copy-in/copy-out path, once per row.
fn exp_live(row: &mut [f32], live: usize) {
    let end = live.next_multiple_of(8).min(row.len());
    row[live..end].fill(f32::NEG_INFINITY);
    exp_in_place(&mut row[..end]);
}

/// `live` under a causal mask, everything without one.
fn causal(g: &Geometry, live: Live) -> Live {
    if g.causal {
        live
    } else {
        Live::All
    }
}

/// The offset of query `r0` from key `c0` (query r sees key c when c ≤ r).
fn offset(r0: usize, c0: usize) -> isize {
    r0 as isize - c0 as isize
}

/// Raw scores of queries `r0 .. r0 + rows` against the keys whose transposed tile is
/// `kt` (`d` × `keys`) into `dst` (rows × keys, rows `ldd` apart); under a causal mask,
/// columns past each row block's diagonal are left unwritten.
fn scores(
    g: &Geometry,
    q: Rows,
    (r0, rows): (usize, usize),
    (c0, keys): (usize, usize),
    kt: &[f32],
    (dst, ldd): (&mut [f32], usize),
) {
    let live = causal(g, Live::ColsTo(offset(r0, c0)));
    product(
        (rows, keys, g.d),
        q.mat_from(r0),
        (kt, keys),
        (dst, ldd),
        false,
        live,
    );
}

/// Forward for one pair: `q` (L × D), `k` (S × D), `v` (S × Dv) into `out` (L × Dv,
/// rows `ldo` apart) and `lse` (L), and the probabilities into `probs` (L × S) when
/// given (only where [`saves_probs`]); `scratch` holds [`forward_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_pair(
    g: &Geometry,
    (q, k, v): (Rows, Rows, Rows),
    mask: PairMask<'_>,
    (out, ldo): (&mut [f32], usize),
    lse: &mut [f32],
    mut probs: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    assert!(
        probs.is_none() || saves_probs(g),
        "probabilities saved over several key tiles"
    );
    if saves_probs(g) {
        forward_one_tile(g, (q, k, v), mask, (out, ldo), lse, probs, scratch);
        return;
    }
    let (l, d, dv) = (g.l, g.d, g.dv);
    let (scores_buf, kt) = scratch.split_at_mut(TILE_Q * TILE_K);
    let mut run_max = [0.0f32; TILE_Q];
    let mut run_sum = [0.0f32; TILE_Q];
    for r0 in (0..l).step_by(TILE_Q) {
        let rows = TILE_Q.min(l - r0);
        for i in r0..r0 + rows {
            out[i * ldo..][..dv].fill(0.0);
        }
        run_max[..rows].fill(f32::NEG_INFINITY);
        run_sum[..rows].fill(0.0);
        let k_end = key_end(g, r0 + rows);
        for c0 in (0..k_end).step_by(TILE_K) {
            let keys = TILE_K.min(k_end - c0);
            let kt = &mut kt[..d * keys];
            transpose(k, c0, keys, d, kt);
            let p = &mut scores_buf[..rows * keys];
            scores(g, q, (r0, rows), (c0, keys), kt, (p, keys));
            for i in 0..rows {
                let r = r0 + i;
                let (live, dead) =
                    p[i * keys..(i + 1) * keys].split_at_mut(live_keys(g, r, c0, keys));
                // Masked keys get probability 0 (exp(−∞)).
                dead.fill(0.0);
                let tile_max = row_max(g, live, r, c0, mask);
                let new_max = run_max[i].max(tile_max);
                if new_max == f32::NEG_INFINITY {
                    // Every key so far is masked out: nothing to add yet.
                    live.fill(0.0);
                    continue;
                }
                let rescale = (run_max[i] - new_max).exp();
                shift_row(g, live, mask.is_some(), new_max);
                exp_live(&mut p[i * keys..(i + 1) * keys], live_keys(g, r, c0, keys));
                // Over the whole row, masked zeros included, so that a causal mask and
                // the same mask given explicitly sum alike.
                let total = sum_of(&p[i * keys..(i + 1) * keys]);
                run_sum[i] = run_sum[i] * rescale + total;
                run_max[i] = new_max;
                if rescale != 1.0 {
                    out[r * ldo..][..dv].iter_mut().for_each(|a| *a *= rescale);
                }
            }
            let live = causal(g, Live::KTo(offset(r0, c0)));
            let dst = (&mut out[r0 * ldo..], ldo);
            product(
                (rows, dv, keys),
                MatRef::rows(p, keys),
                (v.from(c0), v.ld),
                dst,
                true,
                live,
            );
        }
        for i in 0..rows {
            let row = &mut out[(r0 + i) * ldo..][..dv];
            // A row whose keys are all masked out gives zeros (as PyTorch's CPU kernel
            // does), and `lse = -inf` makes its backward zero too.
            let inv = if run_sum[i] > 0.0 {
                let inv = 1.0 / run_sum[i];
                row.iter_mut().for_each(|a| *a *= inv);
                lse[r0 + i] = run_max[i] + run_sum[i].ln();
                inv
            } else {
                lse[r0 + i] = f32::NEG_INFINITY;
                0.0
            };
            if let Some(probs) = probs.as_deref_mut() {
                // One key tile (`saves_probs`): `scores_buf` holds this row's e^(s − max)
                // for the keys 0..k_end, 0 where masked; keys past k_end are never seen.
                let keys = k_end.min(TILE_K);
                let dst = &mut probs[(r0 + i) * g.s..][..g.s];
                let src = &scores_buf[i * keys..(i + 1) * keys];
                for (d, &e) in dst[..keys].iter_mut().zip(src) {
                    *d = e * inv;
                }
                dst[keys..].fill(0.0);
            }
        }
    }
}

/// [`forward_pair`] when every key fits one tile ([`saves_probs`]): a query row's
/// softmax is final after its one score row, so the row is normalised at once and
/// `out = P·V` needs no running maximum, rescaling or final division, and reads the
/// normalised rows from `probs` when it is given. Chosen by the geometry alone, so a
/// forward that saves the probabilities gives the same bits as one that does not.
#[allow(clippy::too_many_arguments)]
fn forward_one_tile(
    g: &Geometry,
    (q, k, v): (Rows, Rows, Rows),
    mask: PairMask<'_>,
    (out, ldo): (&mut [f32], usize),
    lse: &mut [f32],
    mut probs: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    let (l, s, d, dv) = (g.l, g.s, g.d, g.dv);
    let (scores_buf, kt) = scratch.split_at_mut(TILE_Q * TILE_K);
    for r0 in (0..l).step_by(TILE_Q) {
        let rows = TILE_Q.min(l - r0);
        // Keys past `keys` are never seen (0 probability in a saved row).
        let keys = key_end(g, r0 + rows);
        let p = &mut scores_buf[..rows * keys];
        if keys > 0 {
            let kt = &mut kt[..d * keys];
            transpose(k, 0, keys, d, kt);
            scores(g, q, (r0, rows), (0, keys), kt, (p, keys));
        }
        // The softmax in three passes over the rows (maxima; exponentials; sums and
        // normalisation) rather than one row at a time: a row's steps depend on each
        // other (maximum → exponentials → sum), so row by row the core waits on each
        // step's latency, while a pass's rows are independent and overlap. Each element
        // sees the same operations in the same order either way (same bits).
        let mut maxima = [0.0f32; TILE_Q];
        for (i, max) in maxima[..rows].iter_mut().enumerate() {
            let r = r0 + i;
            let (live_part, dead) =
                p[i * keys..(i + 1) * keys].split_at_mut(live_keys(g, r, 0, keys));
            // Masked keys get probability 0 (exp(−∞)).
            dead.fill(0.0);
            *max = row_max(g, live_part, r, 0, mask);
            if *max == f32::NEG_INFINITY {
                // Every key is masked out: zeros (as PyTorch's CPU kernel gives), and
                // `lse = -inf` makes the row's backward zero too.
                live_part.fill(0.0);
            }
        }
        for (i, &max) in maxima[..rows].iter().enumerate() {
            if max != f32::NEG_INFINITY {
                let row = &mut p[i * keys..(i + 1) * keys];
                let live = live_keys(g, r0 + i, 0, keys);
                shift_row(g, &mut row[..live], mask.is_some(), max);
                exp_live(row, live);
            }
        }
        for (i, &max) in maxima[..rows].iter().enumerate() {
            let r = r0 + i;
            let row = &mut p[i * keys..(i + 1) * keys];
            let saved = probs.as_deref_mut().map(|all| &mut all[r * s..(r + 1) * s]);
            if max == f32::NEG_INFINITY {
                if let Some(saved) = saved {
                    saved.fill(0.0);
                }
                lse[r] = f32::NEG_INFINITY;
                continue;
            }
            let live = live_keys(g, r, 0, keys);
            // Over the whole row, masked zeros included, so that a causal mask and the
            // same mask given explicitly sum alike.
            let total = sum_of(row);
            let inv = 1.0 / total;
            // The scores stay in hot scratch until here; the saved row (cold memory,
            // read back by the backward) is written once, in this pass.
            match saved {
                Some(saved) => {
                    for (dst, &x) in saved[..live].iter_mut().zip(&row[..live]) {
                        *dst = x * inv;
                    }
                    saved[live..].fill(0.0);
                }
                None => row[..live].iter_mut().for_each(|x| *x *= inv),
            }
            lse[r] = max + total.ln();
        }
        let live = causal(g, Live::KTo(offset(r0, 0)));
        let a = match probs.as_deref() {
            Some(saved) => MatRef {
                data: &saved[r0 * s..],
                row_stride: s,
                col_stride: 1,
            },
            None => MatRef::rows(p, keys),
        };
        let dst = (&mut out[r0 * ldo..], ldo);
        product((rows, dv, keys), a, (v.from(0), v.ld), dst, false, live);
    }
}

/// Gradients of one pair (see [`forward_pair`]; `out` and `dout` are L × Dv) into
/// `grads`, every element of which is written, from the probabilities the forward saved
/// (`probs`, L × S) or else recomputed from `lse`; `scratch` holds
/// [`backward_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_pair(
    g: &Geometry,
    (q, k, v): (Rows, Rows, Rows),
    mask: PairMask<'_>,
    (out, lse, dout): (Rows, &[f32], Rows),
    probs: Option<&[f32]>,
    mut grads: PairGrads,
    scratch: &mut [f32],
) {
    assert!(
        probs.is_none() || saves_probs(g),
        "probabilities saved over several key tiles"
    );
    let (l, s, d, dv) = (g.l, g.s, g.d, g.dv);
    let (p_buf, rest) = scratch.split_at_mut(TILE_Q * TILE_K);
    let (dp_buf, rest) = rest.split_at_mut(TILE_Q * TILE_K);
    let (delta, rest) = rest.split_at_mut(l);
    let (kt, vt) = rest.split_at_mut(d * TILE_K);
    // rowsum(dO ∘ O) = Σ_j P_ij·dP_ij, the softmax backward's subtracted term.
    for (i, di) in delta.iter_mut().enumerate() {
        *di = dot_of(out.row(i, dv), dout.row(i, dv));
    }
    // Keys no query tile reaches (past the last query under a causal mask, or all of
    // them without queries) get zero gradients; so do queries without keys.
    let reached = if l == 0 { 0 } else { key_end(g, l) };
    grads.zero_rows(1, (reached, s), d);
    grads.zero_rows(2, (reached, s), dv);
    if s == 0 {
        grads.zero_rows(0, (0, l), d);
    }
    for r0 in (0..l).step_by(TILE_Q) {
        let rows = TILE_Q.min(l - r0);
        let k_end = key_end(g, r0 + rows);
        for c0 in (0..k_end).step_by(TILE_K) {
            let keys = TILE_K.min(k_end - c0);
            let (kt, vt) = (&mut kt[..d * keys], &mut vt[..dv * keys]);
            transpose(v, c0, keys, dv, vt);
            let dp = &mut dp_buf[..rows * keys];
            let p: &[f32] = if let Some(probs) = probs {
                // The forward's probabilities (one key tile: c0 = 0), read in place when
                // the tile spans every key (rows then lie `keys` apart), else copied.
                let saved = &probs[r0 * s..];
                if keys == s {
                    &saved[..rows * keys]
                } else {
                    let p = &mut p_buf[..rows * keys];
                    for (i, row) in p.chunks_exact_mut(keys).enumerate() {
                        row.copy_from_slice(&saved[i * s..][..keys]);
                    }
                    p
                }
            } else {
                let p = &mut p_buf[..rows * keys];
                transpose(k, c0, keys, d, kt);
                scores(g, q, (r0, rows), (c0, keys), kt, (p, keys));
                for i in 0..rows {
                    let r = r0 + i;
                    let m = lse[r];
                    let live = if m == f32::NEG_INFINITY {
                        // Every key of this row is masked out: no probability anywhere.
                        0
                    } else {
                        live_keys(g, r, c0, keys)
                    };
                    let (row, dead) = p[i * keys..(i + 1) * keys].split_at_mut(live);
                    dead.fill(0.0);
                    // A masked score is −∞, whose exponential is 0.
                    if mask.is_some() {
                        row_max(g, row, r, c0, mask);
                    }
                    shift_row(g, row, mask.is_some(), m);
                    exp_live(&mut p[i * keys..(i + 1) * keys], live);
                }
                p
            };
            // The first query tile to reach a key tile writes its gradients; later
            // ones add to them (the diagonal one under a causal mask).
            let first = if g.causal { c0 / TILE_Q * TILE_Q } else { 0 };
            let add_kv = r0 > first;
            // dV_j (+)= Pᵀ · dO_i
            let p_t = MatRef::transposed(p, keys);
            let live_t = causal(g, Live::KFrom(-offset(r0, c0)));
            let dst = grads.rows_from(2, c0, dv);
            product(
                (keys, dv, rows),
                p_t,
                (dout.from(r0), dout.ld),
                dst,
                add_kv,
                live_t,
            );
            // dP = dO_i · V_jᵀ
            let live = causal(g, Live::ColsTo(offset(r0, c0)));
            product(
                (rows, keys, dv),
                dout.mat_from(r0),
                (vt, keys),
                (dp, keys),
                false,
                live,
            );
            // dS = P ∘ (dP − delta) · scale, written over dp (0 where P is 0).
            for i in 0..rows {
                let r = r0 + i;
                let di = delta[r];
                let live = if lse[r] == f32::NEG_INFINITY {
                    0
                } else {
                    live_keys(g, r, c0, keys)
                };
                let (ds, dead) = dp[i * keys..(i + 1) * keys].split_at_mut(live);
                dead.fill(0.0);
                for (x, &pv) in ds.iter_mut().zip(&p[i * keys..i * keys + live]) {
                    *x = pv * (*x - di) * g.scale;
                }
            }
            // dQ_i (+)= dS · K_j ; dK_j (+)= dSᵀ · Q_i
            let live = causal(g, Live::KTo(offset(r0, c0)));
            let dst = grads.rows_from(0, r0, d);
            product(
                (rows, d, keys),
                MatRef::rows(dp, keys),
                (k.from(c0), k.ld),
                dst,
                c0 > 0,
                live,
            );
            let ds_t = MatRef::transposed(dp, keys);
            let dst = grads.rows_from(1, c0, d);
            product(
                (keys, d, rows),
                ds_t,
                (q.from(r0), q.ld),
                dst,
                add_kv,
                live_t,
            );
        }
    }
}
