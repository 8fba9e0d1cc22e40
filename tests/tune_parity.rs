//! Prompt tuning against PyTorch (tests/fixtures/tune, written by scripts/ref_tune.py): the loss
//! and its gradients with respect to both prompt tensors equal torch.autograd through
//! transformers, for one and two training pairs, on the CPU backend and on wgpu; AdamW steps
//! equal torch.optim.AdamW.

mod common;

use burn::tensor::Device;
use common::*;
use seggpt::pipeline::ChwImage;
use seggpt::segment::TunedPrompt;
use seggpt::tune::{Activations, AdamW, TrainingPair, prompt_gradients};
use seggpt::weights::{SafetensorsSource, TensorSource, open_model};
use seggpt::{EmbeddingType, MemoryBudget, SegGpt};

const LOSS_TOLERANCE: f32 = 1e-5;
const GRAD_TOLERANCE: f32 = 1e-4;
const ADAMW_TOLERANCE: f32 = 1e-5;

fn tune_fixtures() -> std::path::PathBuf {
    fixtures().join("tune")
}

/// Sample `i` of a `(B, 3, H, W)` tensor as a CHW image.
fn sample(source: &SafetensorsSource, name: &str, i: usize) -> ChwImage {
    let shape = source.shape(name).unwrap();
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let values = source.read_f32(name).unwrap();
    ChwImage::new(c, h, w, values[i * c * h * w..(i + 1) * c * h * w].to_vec()).unwrap()
}

fn check_gradients(device: &Device) {
    let files = open_model(&fixtures().join("models/tiny-k1")).unwrap();
    let model = SegGpt::load(files.source.as_ref(), files.config, device, MemoryBudget::DEFAULT).unwrap();
    let inputs = read_tensors(&tune_fixtures().join("inputs.safetensors"));
    let expected = read_tensors(&tune_fixtures().join("expected.safetensors"));
    let prompt = TunedPrompt {
        pixel_values: sample(&inputs, "prompt_pixel_values", 0),
        masks: sample(&inputs, "prompt_masks", 0),
    };
    let pairs: Vec<TrainingPair> = (0..2)
        .map(|i| TrainingPair {
            image: sample(&inputs, "pixel_values", i),
            label: sample(&inputs, "labels", i),
        })
        .collect();
    for b in [1, 2] {
        let batch: Vec<&TrainingPair> = pairs[..b].iter().collect();
        let grads =
            prompt_gradients(&model, device, &prompt, &batch, EmbeddingType::Instance, Activations::Keep)
                .unwrap();
        let loss = expected.read_f32(&format!("loss.b{b}")).unwrap()[0];
        let loss_err = (grads.loss - loss).abs() / loss.abs();
        assert!(
            loss_err < LOSS_TOLERANCE,
            "batch {b}: loss {} vs {loss} (relative {loss_err:e})",
            grads.loss
        );
        for (name, actual) in [("prompt_pixel_values", &grads.pixel_values), ("prompt_masks", &grads.masks)] {
            let want = expected.read_f32(&format!("grad.{name}.b{b}")).unwrap();
            let err = relative_error(actual, &want);
            println!(
                "batch {b}: loss relative error {loss_err:e}, gradient of {name}: relative error {err:e}"
            );
            assert!(err < GRAD_TOLERANCE, "batch {b}: gradient of {name}: relative error {err:e}");
        }
    }
}

#[test]
fn loss_and_prompt_gradients_match_torch_autograd_on_cpu() {
    check_gradients(&cpu());
}

#[test]
fn loss_and_prompt_gradients_match_torch_autograd_on_wgpu() {
    check_gradients(&wgpu());
}

#[test]
fn three_adamw_steps_match_torch() {
    let st = read_tensors(&tune_fixtures().join("adamw.safetensors"));
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tune_fixtures().join("tune.json")).unwrap()).unwrap();
    let names = ["prompt_pixel_values", "prompt_masks"];
    let mut params: Vec<Vec<f32>> =
        names.iter().map(|n| st.read_f32(&format!("start.{n}")).unwrap()).collect();
    let lens: Vec<usize> = params.iter().map(Vec::len).collect();
    let mut opt = AdamW::new(info["lr"].as_f64().unwrap(), info["weight_decay"].as_f64().unwrap(), &lens);
    for step in 1..=3 {
        let grads: Vec<Vec<f32>> =
            names.iter().map(|n| st.read_f32(&format!("grad{step}.{n}")).unwrap()).collect();
        let (a, b) = params.split_at_mut(1);
        opt.update(&mut [&mut a[0], &mut b[0]], &[&grads[0], &grads[1]]);
        for (name, actual) in names.iter().zip(&params) {
            let want = st.read_f32(&format!("step{step}.{name}")).unwrap();
            let err = actual.iter().zip(&want).fold(0f32, |m, (a, e)| m.max((a - e).abs()));
            assert!(err < ADAMW_TOLERANCE, "step {step}, {name}: max abs error {err:e}");
        }
    }
}
