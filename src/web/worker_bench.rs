//! The page's Benchmark, worker side (docs/MODEL.md §22): the loaded model on the fixed synthetic
//! inputs of [`crate::bench`], one stage at a time, waiting for the GPU after each stage with a
//! one-value read-back (reads are asynchronous in the browser, so `forward_stages`' callback, which
//! cannot wait, does not serve here).

use burn::tensor::{Device, Tensor, TensorData};

use super::now_s;
use crate::bench::{BenchReport, BenchSetup, RunTimes, SYNTHETIC_SEEDS, synthetic_values};
use crate::model::{Samples, Stage, block_flops, query_decoder_flops, stage_flops};
use crate::{AttentionKernel, ForwardOptions, SegGpt, SegGptConfig};

/// Waits until the GPU has done everything queued so far: the device runs work in order, so
/// reading back one value of the last result waits for all of it.
pub(super) async fn wait_for(device_result: &Tensor<4>) -> Result<(), String> {
    let one = (0..4).fold(device_result.clone(), |t, dim| t.narrow(dim, 0, 1));
    one.into_data_async().await.map(drop).map_err(|e| format!("the GPU failed during the benchmark: {e}"))
}

/// The fixed synthetic inputs of one prompt (image, prompt image, prompt mask) on `device`.
fn synthetic_inputs(model: &SegGpt, device: &Device) -> [Tensor<4>; 3] {
    let (h, w) = model.config().half_image_size();
    SYNTHETIC_SEEDS.map(|seed| {
        let values = synthetic_values(3 * h * w, seed);
        Tensor::<4>::from_data(TensorData::new(values, [1, 3, h, w]), device)
    })
}

/// What one forward pass with one prompt takes on `device`, from one timed encoder block: block 0
/// runs both streams (two sequences), and the pass takes its time scaled by the ratio of FLOPs
/// ([`stage_flops`], [`block_flops`]). For the CPU, which compiles nothing and whose time follows the
/// FLOPs; on a GPU the first block's time is mostly shader compilation.
pub async fn estimate_forward_s(model: &SegGpt, device: &Device) -> Result<f64, String> {
    let options = ForwardOptions::default();
    let tokens = model.embed(synthetic_inputs(model, device), options).map_err(|e| e.to_string())?;
    wait_for(&tokens).await?;
    let start = now_s();
    let out = model.encode_block(0, tokens, options);
    wait_for(&out).await?;
    let block_s = now_s() - start;
    let config = model.config();
    let pass: u64 = answer_flops(config).iter().map(|(_, flops)| flops).sum();
    Ok(block_s * pass as f64 / (2 * block_flops(config)) as f64)
}

/// One answer with one prompt on the synthetic inputs, read back, right after the model is ready:
/// a click with one prompt has the same shapes, so the GPU compiles its kernels here, while the
/// visitor picks images, rather than during the first click (docs/MODEL.md §22.5). Returns the
/// seconds it took.
pub async fn warm_up(model: &SegGpt, device: &Device) -> Result<f64, String> {
    let start = now_s();
    let [image, prompt, mask] = synthetic_inputs(model, device);
    let answer = model
        .answer(image, prompt, mask, ForwardOptions::default(), &mut |_, _| {})
        .map_err(|e| e.to_string())?;
    wait_for(&answer).await?;
    Ok(now_s() - start)
}

/// FLOPs of each stage of an answer with one prompt, as `segment` runs it: sample 0, its query
/// half decoded.
fn answer_flops(config: &SegGptConfig) -> [(Stage, u64); 3] {
    let [embeddings, blocks, _] = stage_flops(config, 1, Samples::First);
    [embeddings, blocks, (Stage::Decoder, query_decoder_flops(config))]
}

/// One untimed warm-up (shader compilation), then `runs` timed forward passes of one prompt on
/// `device`, as `segment` runs them (the default ensemble, the query half of sample 0 decoded) but
/// with `attention`. `progress(done, total)` after each pass, the warm-up being pass 0.
pub async fn bench(
    model: &SegGpt,
    device: &Device,
    setup_names: (&str, &str),
    attention: AttentionKernel,
    runs: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<BenchReport, String> {
    let config = model.config();
    let options = ForwardOptions { attention, ..ForwardOptions::default() };
    let samples = Samples::First;
    let mut timed = Vec::new();
    for run in 0..=runs {
        let inputs = synthetic_inputs(model, device);
        wait_for(&inputs[2]).await?;
        let start = now_s();
        let tokens = model.embed(inputs, options).map_err(|e| e.to_string())?;
        wait_for(&tokens).await?;
        let embedded = now_s();
        let features = model.encode(tokens, options, samples, &mut |_, _| {});
        if let Some(last) = features.last() {
            wait_for(last).await?;
        }
        let encoded = now_s();
        let pred = model.decode_query(&features);
        wait_for(&pred).await?;
        let end = now_s();
        if run > 0 {
            timed.push(RunTimes {
                total_s: end - start,
                stages_s: vec![embedded - start, encoded - embedded, end - encoded],
            });
        }
        progress(run, runs);
    }
    let flops: Vec<(&str, u64)> = answer_flops(config).iter().map(|(stage, f)| (stage.name(), *f)).collect();
    let (adapter, dtype) = setup_names;
    let setup = BenchSetup {
        adapter: adapter.to_string(),
        dtype: dtype.to_string(),
        attention,
        prompts: 1,
        canvas: config.image_size.hw().into(),
    };
    BenchReport::new(setup, &flops, &timed)
}
