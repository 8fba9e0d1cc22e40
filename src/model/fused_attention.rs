//! The fused attention kernel's glue (docs/MODEL.md §21): a burn backend extension whose one
//! operation launches `shaders/fused_attention.rs` on burn's cubecl backend (native wgpu and WebGPU),
//! taken where [`AttentionKernel::Fused`](crate::model::AttentionKernel) is chosen and it can run.
//!
//! The operation is registered for `Cube` (the cubecl backend) and for `Fusion` (the decorator both
//! targets run under): under fusion it joins the operation stream as an opaque custom operation and
//! reaches the kernel with the plain cubecl tensors once the stream executes. Other devices (the CPU
//! backend, autodiff) never reach it: [`fused_attention`] answers `None` there and the caller takes
//! the reference path, so no trait bound spreads through the model.

use burn::backend::{
    Backend, Dispatch, DispatchDevice, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::tensor::{DType, Tensor};
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::{CubeBackend, tensor::CubeTensor};

#[path = "../../shaders/fused_attention.rs"]
mod kernel;

/// Invocations per workgroup, one query row each: a quarter of WebGPU's guaranteed 256.
const QUERIES_PER_WORKGROUP: u32 = 64;

/// Bytes of workgroup memory the key and value tiles may take together: half of the 16 KiB that
/// WebGPU guarantees, so that the kernel runs on every adapter.
const TILE_BYTES: usize = 8 << 10;

/// The key rows one tile holds: as many as [`TILE_BYTES`] allows for keys and values of `head_dim`
/// elements of `elem_bytes`, at least 1, at most 32 (more only lengthens the per-tile arrays).
fn tile_keys(head_dim: usize, elem_bytes: usize) -> usize {
    (TILE_BYTES / (2 * head_dim * elem_bytes).max(1)).clamp(1, 32)
}

#[backend_extension(Cube, Fusion)]
pub trait FusedAttentionBackend: Backend {
    /// `q, k, v`: `(S, N, head_dim)`; `rel_h`: `(Hp, Hp, head_dim)`, `rel_w`: `(Wp, Wp, head_dim)`
    /// with `N = Hp * Wp`. Returns `(S, N, head_dim)` (docs/MODEL.md §21).
    #[fusion(dtype = q, shape = q)]
    fn fused_relative_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        rel_h: FloatTensor<Self>,
        rel_w: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;
}

impl FusedAttentionBackend for CubeBackend {
    fn fused_relative_attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        rel_h: CubeTensor,
        rel_w: CubeTensor,
        scale: f32,
    ) -> CubeTensor {
        // The kernel indexes rows directly: every input dense and row-major.
        let [q, k, v, rel_h, rel_w] = [q, k, v, rel_h, rel_w].map(into_contiguous);
        let [sequences, tokens, head_dim] = q.shape().dims::<3>();
        let (grid_h, grid_w) = (rel_h.shape()[0], rel_w.shape()[0]);
        debug_assert_eq!(tokens, grid_h * grid_w, "the tokens are the patch grid");
        let (client, device, dtype) = (q.client.clone(), q.device.clone(), q.dtype);
        let out = empty_device_contiguous_dtype(client.clone(), device, q.shape(), dtype);
        let count =
            CubeCount::Static(tokens.div_ceil(QUERIES_PER_WORKGROUP as usize) as u32, sequences as u32, 1);
        let elem = burn::backend::cubecl::dtype_to_storage_type(dtype);
        let unroll = kernel::channel_unroll(head_dim);
        // SAFETY: every index the kernel forms is within its contiguous inputs of the shapes
        // checked above; invocations past the last query write nothing.
        unsafe {
            kernel::fused_attention_kernel::launch_unchecked(
                &client,
                count,
                CubeDim::new_1d(QUERIES_PER_WORKGROUP),
                q.into_tensor_arg(),
                k.into_tensor_arg(),
                v.into_tensor_arg(),
                rel_h.into_tensor_arg(),
                rel_w.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                scale,
                grid_w as u32,
                (head_dim / unroll) as u32,
                head_dim,
                grid_h,
                grid_w,
                tile_keys(head_dim, dtype.size()),
                unroll,
                elem,
            );
        }
        out
    }
}

/// The fused attention of `q, k, v` `(S, Hp * Wp, head_dim)` with the gathered relative tables
/// `rel_h` `(Hp, Hp, head_dim)` and `rel_w` `(Wp, Wp, head_dim)`, or `None` where the kernel cannot
/// run (not a cubecl device, autodiff, mixed or non-float dtypes): then the caller takes the
/// reference path.
pub fn fused_attention(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    rel_h: &Tensor<3>,
    rel_w: &Tensor<3>,
    scale: f64,
) -> Option<Tensor<3>> {
    // An autodiff device is `DispatchDevice::Autodiff`: the kernel has no backward pass.
    if !matches!(q.device().as_dispatch(), DispatchDevice::Cube(_)) {
        return None;
    }
    let dtype = q.dtype();
    if !matches!(dtype, DType::F32 | DType::F16) || [k, v, rel_h, rel_w].iter().any(|t| t.dtype() != dtype) {
        return None;
    }
    let out = Dispatch::fused_relative_attention(
        q.clone().into_dispatch(),
        k.clone().into_dispatch(),
        v.clone().into_dispatch(),
        rel_h.clone().into_dispatch(),
        rel_w.clone().into_dispatch(),
        scale as f32,
    );
    Some(Tensor::from_dispatch(out))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use burn::tensor::{Device, DeviceKind, Distribution, TensorData};
    use burn_cubecl::cubecl::MemoryScope;

    use super::*;
    use crate::config::SegGptConfig;
    use crate::model::AttentionKernel;
    use crate::model::attention::{Attention, AttentionShape};
    use crate::model::budget::MemoryBudget;
    use crate::model::layer::{Layer, Merge};
    use crate::model::load::Loader;
    use crate::weights::RandomSource;

    /// The attention of block 0 of `config` with seeded random weights.
    fn random_attention(config: &SegGptConfig, device: &Device) -> Attention {
        let source = RandomSource::new(config, 7).unwrap();
        let mut loader = Loader::new(&source, device);
        Attention::load(&mut loader, "model.encoder.layers.0.attention", AttentionShape::seggpt(config))
            .unwrap()
    }

    /// `(B, Hp, Wp, D)` activations of unit variance, as a LayerNorm leaves them.
    fn activations(config: &SegGptConfig, samples: usize, device: &Device) -> Tensor<4> {
        let (hp, wp) = config.patch_grid();
        Tensor::random([samples, hp, wp, config.hidden_size], Distribution::Normal(0.0, 1.0), device)
    }

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let a = a.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let b = b.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        a.iter()
            .zip(&b)
            .map(|(x, y)| if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() })
            .fold(0.0, f32::max)
    }

    #[test]
    fn key_tiles_fill_half_of_webgpu_workgroup_memory() {
        // The released model: head_dim 64, so 16 f32 keys (+ 16 values) make 8 KiB, or 32 f16 keys.
        assert_eq!(tile_keys(64, 4), 16);
        assert_eq!(tile_keys(64, 2), 32);
        // Small heads stop at 32 keys; a head too large for even two rows still gets one.
        assert_eq!(tile_keys(8, 4), 32);
        assert_eq!(tile_keys(4096, 4), 1);
    }

    #[test]
    fn off_cubecl_devices_take_the_reference_path() {
        let device = Device::flex();
        let t = Tensor::<3>::zeros([1, 4, 2], &device);
        let rel = Tensor::<3>::zeros([2, 2, 2], &device);
        assert!(fused_attention(&t, &t, &t, &rel, &rel, 1.0).is_none());
        let autodiff = Device::flex().autodiff();
        let t = Tensor::<3>::zeros([1, 4, 2], &autodiff);
        let rel = Tensor::<3>::zeros([2, 2, 2], &autodiff);
        assert!(fused_attention(&t, &t, &t, &rel, &rel, 1.0).is_none());
    }

    #[test]
    fn wgpu_takes_the_fused_kernel_in_f32_only_with_matching_dtypes() {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let t = Tensor::<3>::ones([2, 6, 4], &device);
        let rel_h = Tensor::<3>::zeros([3, 3, 4], &device);
        let rel_w = Tensor::<3>::zeros([2, 2, 4], &device);
        let out = fused_attention(&t, &t, &t, &rel_h, &rel_w, 0.5).expect("the kernel runs on wgpu");
        // Equal keys and values of ones: every softmax weight is 1/6 and the output is ones.
        assert_eq!(out.dims(), [2, 6, 4]);
        let values = out.into_data().try_into_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| (v - 1.0).abs() < 1e-6), "{values:?}");
        let f64_values = Tensor::<3>::ones([2, 6, 4], (&device, DType::F64));
        assert!(fused_attention(&t, &t, &f64_values, &rel_h, &rel_w, 0.5).is_none());
    }

    /// Seeded values in [-1, 1) (xorshift64*).
    fn seeded(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                bits as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The attention of docs/MODEL.md §21 written out in f64, one query row at a time.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        rel_h: &[f32],
        rel_w: &[f32],
        [sequences, grid_h, grid_w, dim]: [usize; 4],
        scale: f64,
    ) -> Vec<f32> {
        let n = grid_h * grid_w;
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
        let mut out = vec![0.0; sequences * n * dim];
        for s in 0..sequences {
            for i in 0..n {
                let qi = &q[(s * n + i) * dim..][..dim];
                let (qh, qw) = (i / grid_w, i % grid_w);
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        let (kh, kw) = (j / grid_w, j % grid_w);
                        scale * dot(qi, &k[(s * n + j) * dim..][..dim])
                            + dot(qi, &rel_h[(qh * grid_h + kh) * dim..][..dim])
                            + dot(qi, &rel_w[(qw * grid_w + kw) * dim..][..dim])
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for c in 0..dim {
                    let value: f64 = (0..n).map(|j| weights[j] * v[(s * n + j) * dim + c] as f64).sum();
                    out[(s * n + i) * dim + c] = (value / total) as f32;
                }
            }
        }
        out
    }

    /// The kernel alone against [`direct`], over head widths, grids spanning one and several
    /// workgroups of queries and one and several key tiles. 16 x 31 with head width 64 is past
    /// lavapipe's 65,535 loop turns per invocation had the channel loops not been unrolled (see the
    /// kernel's module documentation): the smallest grid that catches that bug. The released grid
    /// is the second tier's ([`tier2_kernel_matches_a_direct_computation_at_the_released_grid`]).
    #[test]
    fn kernel_matches_a_direct_computation_on_wgpu() {
        check_against_direct(&[
            [2, 8, 4, 8],
            [2, 4, 4, 64],
            [2, 8, 4, 64],
            [2, 16, 8, 8],
            [2, 16, 8, 64],
            [1, 8, 7, 8],
            [1, 7, 8, 8],
            [1, 20, 5, 8],
            [1, 12, 12, 64],
            [1, 16, 31, 64],
            [1, 10, 10, 6],
        ]);
    }

    /// The released model's grid (56 x 28) at its head width with two sequences, at width 40 (past
    /// the loop budget by another route), and the larger 64 x 32 grid.
    #[test]
    #[ignore = "tier 2 (minutes on lavapipe): scripts/test.sh --full"]
    fn tier2_kernel_matches_a_direct_computation_at_the_released_grid() {
        check_against_direct(&[[1, 64, 32, 8], [1, 56, 28, 8], [1, 56, 28, 40], [2, 56, 28, 64]]);
    }

    #[test]
    fn channel_loops_unroll_by_the_largest_divisor_up_to_eight() {
        assert_eq!(kernel::channel_unroll(64), 8);
        assert_eq!(kernel::channel_unroll(40), 8);
        assert_eq!(kernel::channel_unroll(12), 6);
        assert_eq!(kernel::channel_unroll(6), 6);
        assert_eq!(kernel::channel_unroll(9), 3);
        assert_eq!(kernel::channel_unroll(11), 1);
    }

    /// `[sequences, grid_h, grid_w, head_dim]` cases of random inputs, each within 1e-5.
    fn check_against_direct(cases: &[[usize; 4]]) {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let mut failures = Vec::new();
        for &[sequences, grid_h, grid_w, dim] in cases {
            let n = grid_h * grid_w;
            let scale = (dim as f64).powf(-0.5);
            let make = |shape: [usize; 3], seed| {
                let values = seeded(shape.iter().product(), seed);
                (Tensor::<3>::from_data(TensorData::new(values.clone(), shape), &device), values)
            };
            let (q, qv) = make([sequences, n, dim], 1);
            let (k, kv) = make([sequences, n, dim], 2);
            let (v, vv) = make([sequences, n, dim], 3);
            let (rel_h, rh) = make([grid_h, grid_h, dim], 4);
            let (rel_w, rw) = make([grid_w, grid_w, dim], 5);
            let got = fused_attention(&q, &k, &v, &rel_h, &rel_w, scale).expect("the kernel runs on wgpu");
            let got = got.into_data().try_into_vec::<f32>().unwrap();
            let want = direct(&qv, &kv, &vv, &rh, &rw, [sequences, grid_h, grid_w, dim], scale);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| if a.is_finite() { (a - b).abs() } else { f32::INFINITY })
                .fold(0.0f32, f32::max);
            println!("S {sequences}, grid {grid_h}x{grid_w}, head {dim}: max abs error {err:e}");
            if err > 1e-5 {
                failures.push(format!("S {sequences}, grid {grid_h}x{grid_w}, head {dim}: {err}"));
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    /// `config`'s attention of block 0 on wgpu (lavapipe here): the fused kernel within `limit`
    /// of the reference path, and really taken.
    fn check_fused_against_reference(config: &SegGptConfig, limit: f32) {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let attention = random_attention(config, &device);
        let x = activations(config, 1, &device);
        let budget = MemoryBudget::DEFAULT;
        let reference = attention.forward(x.clone(), budget, AttentionKernel::Reference);
        let fused = attention.forward(x, budget, AttentionKernel::Fused);
        let err = max_abs_diff(fused, reference);
        println!(
            "hidden {}, {} heads: fused vs reference, max abs difference {err:e}",
            config.hidden_size, config.num_attention_heads
        );
        assert!(err <= limit, "max abs difference {err}");
        assert!(err > 0.0, "bitwise equal outputs: the fused kernel did not run");
    }

    /// The released canvas (896 x 448: 1568 tokens) at a narrow width (hidden 64, 2 heads of 32):
    /// every query walks all 1568 keys, past lavapipe's loop budget without the unrolling, at a
    /// 256th of the full width's cost. Within 1e-4 as at full width.
    #[test]
    fn fused_matches_the_reference_on_the_released_canvas_on_wgpu() {
        let config = SegGptConfig { hidden_size: 64, num_attention_heads: 2, ..SegGptConfig::default() };
        check_fused_against_reference(&config, 1e-4);
    }

    /// The released model's attention (hidden 1024, 16 heads, the 896x448 canvas: 1568 tokens):
    /// the fused kernel within 1e-4 of the reference path.
    #[test]
    #[ignore = "tier 2 (minutes on lavapipe): scripts/test.sh --full"]
    fn tier2_fused_matches_the_reference_at_full_width_on_wgpu() {
        check_fused_against_reference(&SegGptConfig::default(), 1e-4);
    }

    /// Everything one block holds on the device: the largest single allocation ever served and the
    /// bytes reserved, summed over its memory pools.
    fn memory(device: &Device) -> (u64, u64) {
        let DispatchDevice::Cube(cube) = device.as_dispatch() else { panic!("a cubecl device") };
        let report = cube.client().memory_report(MemoryScope::Device);
        let largest = report
            .streams
            .iter()
            .flat_map(|s| s.pools.dynamic.iter().chain([&s.pools.persistent, &s.pools.dedicated]))
            .map(|p| p.largest_alloc)
            .max()
            .unwrap_or(0);
        (largest, report.usage().bytes_reserved)
    }

    /// One full-width block (2 samples: one prompt's image and mask streams) with `kernel` on wgpu:
    /// a warm-up forward (shader compilation, burn's autotuning), then timed forwards, each on a
    /// fresh input, each timed until its values are on the host and checked against the same block
    /// on the CPU backend; then the largest buffer and the reserved bytes. Run alone, one kernel per
    /// process, so that the memory marks are this block's:
    /// `cargo test --release --lib model::fused_attention::tests::block_ -- --ignored --exact --nocapture`
    /// with the full test name.
    fn measure_block(kernel: AttentionKernel) {
        const TIMED: usize = 3;
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let cpu = Device::flex();
        let config = SegGptConfig::default();
        let source = RandomSource::new(&config, 7).unwrap();
        let layer = Layer::load(&mut Loader::new(&source, &device), 0, &config).unwrap();
        let cpu_layer = Layer::load(&mut Loader::new(&source, &cpu), 0, &config).unwrap();
        let budget = MemoryBudget::DEFAULT;
        let (hp, wp) = config.patch_grid();
        let shape = [2, hp, wp, config.hidden_size];
        let mut times = Vec::new();
        for run in 0..=TIMED {
            // Uniform in [-1, 1): variance 1/3, near what a LayerNorm leaves.
            let values = seeded(shape.iter().product(), 100 + run as u64);
            let input =
                |device: &Device| Tensor::<4>::from_data(TensorData::new(values.clone(), shape), device);
            let want = cpu_layer.forward(input(&cpu), Merge::None, budget, AttentionKernel::Reference);
            // Natively `into_data` only promises the values: cubecl copies them from the device,
            // waiting for the work before them, on the first access. So the input is read back
            // before the clock starts and the output before it stops.
            let x = input(&device);
            x.clone().into_data().try_into_vec::<f32>().unwrap();
            let start = Instant::now();
            let got =
                layer.forward(x, Merge::None, budget, kernel).into_data().try_into_vec::<f32>().unwrap();
            let seconds = start.elapsed().as_secs_f64();
            let got = TensorData::new(got, shape);
            let err = max_abs_diff(Tensor::from_data(got, &cpu), want);
            println!(
                "{kernel:?}: forward {run} ({}) {seconds:.2} s, max abs difference from the CPU {err:e}",
                if run == 0 { "warm-up" } else { "timed" }
            );
            assert!(err <= 1e-3, "forward {run} is off by {err} from the CPU backend");
            if run > 0 {
                times.push(seconds);
            }
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let (largest, reserved) = memory(&device);
        println!(
            "{kernel:?}: one full-width block mean {mean:.2} s, min {min:.2} s ({TIMED} forwards); \
             largest buffer {:.1} MiB, reserved {:.1} MiB",
            largest as f64 / (1 << 20) as f64,
            reserved as f64 / (1 << 20) as f64
        );
    }

    #[test]
    #[ignore = "a measurement, minutes on lavapipe: see measure_block"]
    fn block_reference() {
        measure_block(AttentionKernel::Reference);
    }

    #[test]
    #[ignore = "a measurement, minutes on lavapipe: see measure_block"]
    fn block_fused() {
        measure_block(AttentionKernel::Fused);
    }
}
