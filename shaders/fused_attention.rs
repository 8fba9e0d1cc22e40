//! The fused attention kernel (docs/MODEL.md §21), in CubeCL: burn compiles it to WGSL for WebGPU and
//! to SPIR-V or WGSL for native wgpu, for f32 and f16 alike. Compiled into the crate by
//! `src/model/fused_attention.rs`, which launches it.
//!
//! One workgroup attends `CUBE_DIM_X` query rows of one `(sample, head)` sequence, one query row per
//! invocation. The keys and values stream through workgroup memory `tile_keys` rows at a time, and
//! each invocation keeps a running maximum, a running denominator and an f32 accumulator (the online
//! softmax), so no score matrix is ever written. The relative position terms of a query row
//! (`q . Rh[qh, kh]` for every key row `kh`, `q . Rw[qw, kw]` for every key column `kw`,
//! docs/MODEL.md §5.3) are computed once per query, before the key loop, and then only looked up.
//!
//! The loops over a head's channels are unrolled [`UNROLLED_CHANNELS`] at a time. On lavapipe
//! (Mesa's software Vulkan, which the tests run on) that is a matter of correctness, not speed: its
//! shader compiler stops every loop of an invocation once all its loops together have turned 65,535
//! times, and then carries on with wrong values. Rolled, the released model's grid (1568 keys, head
//! width 64) needs about 200,000 turns per query; unrolled by 8 about 31,000 (docs/MODEL.md §21).

use burn_cubecl::cubecl;
use cubecl::prelude::*;

/// A score below every real one: the running maximum before the first key. Finite because WGSL
/// has no infinity literal; `exp(NO_SCORE - m)` is exactly 0 for any real score `m`.
const NO_SCORE: f32 = -1.0e30;

/// The channels one turn of a channel loop handles (a divisor of the head width; see the module's
/// documentation for why the loops are unrolled at all).
pub const UNROLLED_CHANNELS: usize = 8;

/// The largest divisor of `head_dim` up to [`UNROLLED_CHANNELS`]: the channel loops' unroll.
pub fn channel_unroll(head_dim: usize) -> usize {
    (1..=UNROLLED_CHANNELS).rev().find(|u| head_dim.is_multiple_of(*u)).unwrap_or(1)
}

/// `out[s, n] = softmax_k(scale * q[s, n] . k[s, k] + Rh[qh, kh] . q[s, n] + Rw[qw, kw] . q[s, n]) v[s, k]`.
///
/// `q, k, v, out`: contiguous `(S, N, head_dim)`, `N = grid_h * grid_w` tokens in row-major order;
/// `rel_h`: `(grid_h, grid_h, head_dim)`, `rel_w`: `(grid_w, grid_w, head_dim)`; `columns` is
/// `grid_w` again, as a runtime value: the query's grid position is one division by it, and the
/// keys' positions are counted along the tile, not divided per key. Launched with
/// `(ceil(N / CUBE_DIM_X), S)` workgroups.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn fused_attention_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    rel_h: &Tensor<F>,
    rel_w: &Tensor<F>,
    out: &mut Tensor<F>,
    scale: f32,
    columns: u32,
    channel_chunks: u32,
    #[comptime] head_dim: usize,
    #[comptime] grid_h: usize,
    #[comptime] grid_w: usize,
    #[comptime] tile_keys: usize,
    #[comptime] unroll: usize,
    #[define(F)] _dtype: ElemType,
) {
    let tokens = comptime!(grid_h * grid_w);
    let tiles = comptime!(tokens.div_ceil(tile_keys));
    let tile_len = comptime!(tile_keys * head_dim);
    let sequence_len = comptime!(tokens * head_dim);
    // A runtime bound: with a constant one lavapipe's compiler unrolls the chunks too, and the
    // fully unrolled kernel takes minutes there.
    let chunks = channel_chunks as usize;
    let threads = CUBE_DIM_X as usize;
    let query = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let sequence_start = CUBE_POS_Y as usize * tokens * head_dim;
    // Invocations past the last query still load tiles and meet every barrier; they read row 0
    // and write nothing.
    let valid = query < tokens;
    let row = if valid { query } else { 0usize };
    let qh = row / columns as usize;
    let qw = row - qh * grid_w;

    let mut q_row = Array::<f32>::new(head_dim);
    let mut acc = Array::<f32>::new(head_dim);
    for chunk in 0..chunks {
        #[unroll]
        for u in 0..unroll {
            let c = chunk * unroll + u;
            q_row[c] = f32::cast_from(q[sequence_start + row * head_dim + c]);
            acc[c] = 0.0f32;
        }
    }

    // The relative terms use the unscaled q (docs/MODEL.md §5.3): by key row, then by key column.
    let mut rel = Array::<f32>::new(comptime!(grid_h + grid_w));
    // Runtime loops over the grid: one body each, whatever the grid's size.
    let mut kh = 0usize;
    while kh < grid_h {
        let table = (qh * grid_h + kh) * head_dim;
        let mut dot = 0.0f32;
        for chunk in 0..chunks {
            #[unroll]
            for u in 0..unroll {
                let c = chunk * unroll + u;
                dot += q_row[c] * f32::cast_from(rel_h[table + c]);
            }
        }
        rel[kh] = dot;
        kh += 1;
    }
    let mut kw = 0usize;
    while kw < grid_w {
        let table = (qw * grid_w + kw) * head_dim;
        let mut dot = 0.0f32;
        for chunk in 0..chunks {
            #[unroll]
            for u in 0..unroll {
                let c = chunk * unroll + u;
                dot += q_row[c] * f32::cast_from(rel_w[table + c]);
            }
        }
        rel[grid_h + kw] = dot;
        kw += 1;
    }
    for chunk in 0..chunks {
        #[unroll]
        for u in 0..unroll {
            let c = chunk * unroll + u;
            q_row[c] *= scale;
        }
    }

    let mut k_tile = Shared::<[F]>::new_slice(tile_len);
    let mut v_tile = Shared::<[F]>::new_slice(tile_len);
    let mut scores = Array::<f32>::new(tile_keys);
    let mut running_max = f32::new(NO_SCORE);
    let mut denominator = 0.0f32;

    for tile in 0..tiles {
        let first_key = tile * tile_keys;
        let tile_offset = first_key * head_dim;
        let tile_start = sequence_start + tile_offset;
        let mut i = UNIT_POS_X as usize;
        while i < tile_len {
            if tile_offset + i < sequence_len {
                k_tile[i] = k[tile_start + i];
                v_tile[i] = v[tile_start + i];
            } else {
                k_tile[i] = F::new(0.0);
                v_tile[i] = F::new(0.0);
            }
            i += threads;
        }
        sync_cube();

        // The grid position (kh, kw) of the tile's keys, counted from its first key's.
        let mut kh = first_key / columns as usize;
        let mut kw = first_key - kh * grid_w;
        let mut tile_max = f32::new(NO_SCORE);
        for j in 0..tile_keys {
            let mut score = f32::new(NO_SCORE);
            if first_key + j < tokens {
                let mut dot = 0.0f32;
                for chunk in 0..chunks {
                    #[unroll]
                    for u in 0..unroll {
                        let c = chunk * unroll + u;
                        dot += q_row[c] * f32::cast_from(k_tile[j * head_dim + c]);
                    }
                }
                score = dot + rel[kh] + rel[grid_h + kw];
            }
            scores[j] = score;
            tile_max = f32::max(tile_max, score);
            kw += 1;
            if kw == grid_w {
                kw = 0;
                kh += 1;
            }
        }

        // Rescale what was accumulated under the old maximum once per tile, not once per key.
        let new_max = f32::max(running_max, tile_max);
        let correction = f32::exp(running_max - new_max);
        denominator *= correction;
        for chunk in 0..chunks {
            #[unroll]
            for u in 0..unroll {
                let c = chunk * unroll + u;
                acc[c] *= correction;
            }
        }
        for j in 0..tile_keys {
            if first_key + j < tokens {
                let p = f32::exp(scores[j] - new_max);
                denominator += p;
                for chunk in 0..chunks {
                    #[unroll]
                    for u in 0..unroll {
                        let c = chunk * unroll + u;
                        acc[c] += p * f32::cast_from(v_tile[j * head_dim + c]);
                    }
                }
            }
        }
        running_max = new_max;
        // Nobody overwrites the tiles while another invocation still reads them.
        sync_cube();
    }

    if valid {
        let inverse = 1.0f32 / denominator;
        let out_start = sequence_start + query * head_dim;
        for chunk in 0..chunks {
            #[unroll]
            for u in 0..unroll {
                let c = chunk * unroll + u;
                out[out_start + c] = F::cast_from(acc[c] * inverse);
            }
        }
    }
}
