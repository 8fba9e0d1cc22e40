//! The page's Benchmark, worker side (docs/MODEL.md §22): the loaded model on the fixed synthetic
//! inputs of [`crate::bench`], one stage at a time, waiting for the GPU after each stage with a
//! one-value read-back (reads are asynchronous in the browser, so `forward_stages`' callback, which
//! cannot wait, does not serve here).

use burn::tensor::{Device, Tensor, TensorData};

use super::now_s;
use crate::bench::{BenchReport, BenchSetup, RunTimes, SYNTHETIC_SEEDS, synthetic_values};
use crate::model::{Samples, stage_flops};
use crate::{AttentionKernel, ForwardOptions, SegGpt};

/// Waits until the GPU has done everything queued so far: the device runs work in order, so
/// reading back one value of the last result waits for all of it.
async fn wait_for(device_result: &Tensor<4>) -> Result<(), String> {
    let one = (0..4).fold(device_result.clone(), |t, dim| t.narrow(dim, 0, 1));
    one.into_data_async().await.map(drop).map_err(|e| format!("the GPU failed during the benchmark: {e}"))
}

/// One untimed warm-up (shader compilation), then `runs` timed forward passes of one prompt on
/// `device`, as `segment` runs them (the default ensemble, sample 0 decoded) but with `attention`.
/// `progress(done, total)` after each pass, the warm-up being pass 0.
pub async fn bench(
    model: &SegGpt,
    device: &Device,
    setup_names: (&str, &str),
    attention: AttentionKernel,
    runs: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<BenchReport, String> {
    let config = model.config();
    let (h, w) = config.half_image_size();
    let input = |seed: f32| {
        let values = synthetic_values(3 * h * w, seed);
        Tensor::<4>::from_data(TensorData::new(values, [1, 3, h, w]), device)
    };
    let options = ForwardOptions { attention, ..ForwardOptions::default() };
    let samples = Samples::First;
    let mut timed = Vec::new();
    for run in 0..=runs {
        let inputs = SYNTHETIC_SEEDS.map(input);
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
        let pred = model.decode(&features);
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
    let flops: Vec<(&str, u64)> =
        stage_flops(config, 1, samples).iter().map(|(stage, f)| (stage.name(), *f)).collect();
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
