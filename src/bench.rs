//! The benchmark's report (docs/MODEL.md §22), one definition for `seggpt bench --profile` and the page's
//! Benchmark: what ran (adapter, dtype, prompts, canvas), the time per forward pass and per stage, and the
//! achieved GFLOP/s from the FLOPs of `model::cost`. No burn here: the page, whose wasm has no model, shows
//! and copies the report the worker made.

use serde::{Deserialize, Serialize};

use crate::model::AttentionKernel;

/// The fixed synthetic inputs' seeds, one per input (`pixel_values`, `prompt_pixel_values`,
/// `prompt_masks`): every benchmark, native or in the browser, times the same numbers.
pub const SYNTHETIC_SEEDS: [f32; 3] = [0.1, 0.2, 0.3];

/// `len` values of a synthetic input: a deterministic sawtooth in [-2, 2), the range of normalised
/// pixels, so that no op meets an unusual number (all zeros, NaN).
pub fn synthetic_values(len: usize, seed: f32) -> Vec<f32> {
    (0..len).map(|i| ((i as f32 * 0.618 + seed).fract() - 0.5) * 4.0).collect()
}

/// What a benchmark ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchSetup {
    /// The device: `cpu(flex)`, `wgpu`, or the browser's WebGPU adapter name.
    pub adapter: String,
    /// The float type the model computes in (`f32`, `f16`).
    pub dtype: String,
    /// The attention the encoder blocks ran (the reference path wherever the fused kernel cannot).
    pub attention: AttentionKernel,
    /// K, prompts per forward pass.
    pub prompts: usize,
    /// The canvas `[height, width]` the model runs on (prompt above query).
    pub canvas: [usize; 2],
}

/// The seconds one timed run took, in total and per stage (in the order of the FLOPs given to
/// [`BenchReport::new`]), each stage waited for before the next began.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTimes {
    pub total_s: f64,
    pub stages_s: Vec<f64>,
}

/// Mean time and achieved rate of one stage, or of the whole forward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub name: String,
    pub mean_s: f64,
    pub min_s: f64,
    pub gflop: f64,
    pub gflop_per_s: f64,
}

impl Timing {
    fn of(name: &str, times: &[f64], flops: u64) -> Self {
        let mean_s = times.iter().sum::<f64>() / times.len() as f64;
        let min_s = times.iter().copied().fold(f64::INFINITY, f64::min);
        let gflop = flops as f64 / 1e9;
        // A stage too fast for the clock (0 s) has no meaningful rate.
        let gflop_per_s = if mean_s > 0.0 { gflop / mean_s } else { 0.0 };
        Self { name: name.to_string(), mean_s, min_s, gflop, gflop_per_s }
    }
}

/// A benchmark's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    #[serde(flatten)]
    pub setup: BenchSetup,
    /// Timed runs (after one untimed warm-up).
    pub runs: usize,
    pub forward: Timing,
    pub stages: Vec<Timing>,
    /// Click to select's times, when SAM was loaded (the page's Benchmark times it too then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sam: Option<SamTimes>,
}

/// Click to select's benchmark (`seggpt bench-sam`, and the page's Benchmark once SAM is loaded): SAM's
/// image embedding (once per image) and one click (prompt encoder, decoder, the masks at the image's
/// size), each read back before the clock stops. No FLOPs are counted for SAM: its GFLOP columns are 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamTimes {
    /// Which SAM, in its shape: `ViT 168 wide, 12 blocks, 1024 px`.
    pub model: String,
    /// Timed runs (after one untimed warm-up).
    pub runs: usize,
    pub embedding: Timing,
    pub click: Timing,
}

impl SamTimes {
    /// The times of `runs` embeddings and as many clicks; errors on none, or on counts that differ.
    pub fn new(model: String, embedding_s: &[f64], click_s: &[f64]) -> Result<Self, String> {
        if embedding_s.is_empty() || embedding_s.len() != click_s.len() {
            return Err(format!(
                "a SAM benchmark needs as many timed clicks as embeddings, at least one ({} and {})",
                embedding_s.len(),
                click_s.len()
            ));
        }
        Ok(Self {
            model,
            runs: embedding_s.len(),
            embedding: Timing::of("sam-embedding", embedding_s, 0),
            click: Timing::of("sam-click", click_s, 0),
        })
    }

    /// One line: what a visitor waits for once per image and once per click.
    pub fn summary(&self) -> String {
        format!(
            "SAM ({}): image embedding {:.3} s (min {:.3}), click {:.4} s (min {:.4}; prompt encoder, decoder, \
             masks at the image's size), mean of {} run(s) after a warm-up",
            self.model,
            self.embedding.mean_s,
            self.embedding.min_s,
            self.click.mean_s,
            self.click.min_s,
            self.runs
        )
    }
}

impl BenchReport {
    /// The report of `runs`, with the FLOPs of each stage `(name, flops)`; errors on no runs or on
    /// runs whose stage count is not the stages'.
    pub fn new(setup: BenchSetup, stage_flops: &[(&str, u64)], runs: &[RunTimes]) -> Result<Self, String> {
        if runs.is_empty() {
            return Err("a benchmark needs at least one timed run".into());
        }
        if let Some(run) = runs.iter().find(|run| run.stages_s.len() != stage_flops.len()) {
            return Err(format!(
                "a run has {} stage times for {} stages",
                run.stages_s.len(),
                stage_flops.len()
            ));
        }
        let totals: Vec<f64> = runs.iter().map(|run| run.total_s).collect();
        let total_flops = stage_flops.iter().map(|(_, flops)| flops).sum();
        let stages = stage_flops
            .iter()
            .enumerate()
            .map(|(i, (name, flops))| {
                let times: Vec<f64> = runs.iter().map(|run| run.stages_s[i]).collect();
                Timing::of(name, &times, *flops)
            })
            .collect();
        Ok(Self {
            setup,
            runs: runs.len(),
            forward: Timing::of("forward", &totals, total_flops),
            stages,
            sam: None,
        })
    }

    /// The breakdown as text, one line per stage and one for the forward pass (what `seggpt bench
    /// --profile` prints).
    pub fn lines(&self) -> Vec<String> {
        let line = |t: &Timing| {
            format!(
                "{:<10} mean {:8.3} s  min {:8.3} s  {:10.3} GFLOP  {:8.2} GFLOP/s",
                t.name, t.mean_s, t.min_s, t.gflop, t.gflop_per_s
            )
        };
        let setup = &self.setup;
        let mut lines = vec![format!(
            "{} ({}, {} attention), {} prompt(s), canvas {}x{}, {} run(s)",
            setup.adapter,
            setup.dtype,
            setup.attention.name(),
            setup.prompts,
            setup.canvas[0],
            setup.canvas[1],
            self.runs
        )];
        lines.extend(self.stages.iter().map(line));
        lines.push(line(&self.forward));
        lines.extend(self.sam.as_ref().map(SamTimes::summary));
        lines
    }

    /// The report as pretty-printed JSON (the page's "Copy as JSON").
    pub fn to_json(&self) -> String {
        // Plain data of strings and finite numbers: serialising it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `value` with about 3 significant digits, in scientific notation below 0.01: a table of GFLOP and GFLOP/s
/// holds the full model (1588.5) and the test fixtures (0.000123) alike.
pub fn three_digits(value: f64) -> String {
    match value.abs() {
        0.0 => "0".into(),
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        v if v >= 0.01 => format!("{value:.3}"),
        _ => format!("{value:.2e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> BenchSetup {
        BenchSetup {
            adapter: "test".into(),
            dtype: "f32".into(),
            attention: AttentionKernel::Reference,
            prompts: 1,
            canvas: [64, 32],
        }
    }

    #[test]
    fn means_minima_and_rates_per_stage_and_in_total() {
        let runs = [
            RunTimes { total_s: 3.0, stages_s: vec![1.0, 2.0] },
            RunTimes { total_s: 5.0, stages_s: vec![1.0, 4.0] },
        ];
        let report = BenchReport::new(setup(), &[("a", 2_000_000_000), ("b", 6_000_000_000)], &runs).unwrap();
        assert_eq!(report.runs, 2);
        assert_eq!((report.forward.mean_s, report.forward.min_s, report.forward.gflop), (4.0, 3.0, 8.0));
        assert_eq!(report.forward.gflop_per_s, 2.0);
        assert_eq!(report.stages[0].name, "a");
        assert_eq!((report.stages[0].mean_s, report.stages[0].gflop_per_s), (1.0, 2.0));
        assert_eq!(
            (report.stages[1].mean_s, report.stages[1].min_s, report.stages[1].gflop_per_s),
            (3.0, 2.0, 2.0)
        );
        let lines = report.lines();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("test (f32, reference attention), 1 prompt(s), canvas 64x32, 2 run(s)"),
            "{}",
            lines[0]
        );
        assert!(lines[3].starts_with("forward    mean    4.000 s  min    3.000 s"), "{}", lines[3]);
    }

    #[test]
    fn json_round_trips_with_the_setup_at_the_top_level() {
        let runs = [RunTimes { total_s: 0.5, stages_s: vec![0.5] }];
        let report = BenchReport::new(setup(), &[("blocks", 1_000_000_000)], &runs).unwrap();
        let json = report.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["adapter"], "test");
        assert_eq!(value["attention"], "reference");
        assert_eq!(value["forward"]["gflop_per_s"], 2.0);
        assert_eq!(serde_json::from_str::<BenchReport>(&json).unwrap(), report);
    }

    #[test]
    fn sam_times_are_means_and_minima_and_travel_in_the_json_only_when_timed() {
        let sam = SamTimes::new("ViT 32 wide, 4 blocks, 64 px".into(), &[2.0, 4.0], &[0.5, 0.25]).unwrap();
        assert_eq!((sam.runs, sam.embedding.mean_s, sam.embedding.min_s), (2, 3.0, 2.0));
        assert_eq!((sam.click.mean_s, sam.click.min_s, sam.click.gflop_per_s), (0.375, 0.25, 0.0));
        assert!(
            sam.summary().starts_with(
                "SAM (ViT 32 wide, 4 blocks, 64 px): image embedding 3.000 s (min 2.000), click 0.3750 s"
            ),
            "{}",
            sam.summary()
        );
        let runs = [RunTimes { total_s: 0.5, stages_s: vec![0.5] }];
        let mut report = BenchReport::new(setup(), &[("blocks", 1)], &runs).unwrap();
        assert!(!report.to_json().contains("sam"), "no SAM, no key");
        report.sam = Some(sam.clone());
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(value["sam"]["click"]["mean_s"], 0.375);
        assert_eq!(serde_json::from_str::<BenchReport>(&report.to_json()).unwrap(), report);
        assert_eq!(report.lines().last().unwrap(), &sam.summary());
        assert!(SamTimes::new("x".into(), &[], &[]).unwrap_err().contains("at least one (0 and 0)"));
        assert!(SamTimes::new("x".into(), &[1.0], &[]).unwrap_err().contains("(1 and 0)"));
    }

    #[test]
    fn no_runs_or_mismatched_stages_are_refused() {
        let flops = [("a", 1), ("b", 1)];
        assert!(BenchReport::new(setup(), &flops, &[]).unwrap_err().contains("at least one"));
        let short = [RunTimes { total_s: 1.0, stages_s: vec![1.0] }];
        assert!(
            BenchReport::new(setup(), &flops, &short).unwrap_err().contains("1 stage times for 2 stages")
        );
    }

    #[test]
    fn a_stage_of_zero_seconds_has_rate_zero_not_infinity() {
        let runs = [RunTimes { total_s: 1.0, stages_s: vec![0.0] }];
        let report = BenchReport::new(setup(), &[("a", 5)], &runs).unwrap();
        assert_eq!(report.stages[0].gflop_per_s, 0.0);
        assert!(report.to_json().contains("\"gflop_per_s\": 0.0"));
    }

    #[test]
    fn three_digits_keeps_small_values_readable() {
        let cases =
            [(1588.49, "1588"), (12.345, "12.3"), (1.2345, "1.23"), (0.0123, "0.012"), (0.000123, "1.23e-4")];
        for (value, text) in cases {
            assert_eq!(three_digits(value), text);
        }
        assert_eq!(three_digits(0.0), "0");
    }

    #[test]
    fn synthetic_inputs_are_fixed_and_in_the_normalised_range() {
        let a = synthetic_values(1000, SYNTHETIC_SEEDS[0]);
        assert_eq!(a, synthetic_values(1000, SYNTHETIC_SEEDS[0]));
        assert_ne!(a, synthetic_values(1000, SYNTHETIC_SEEDS[1]));
        assert!(a.iter().all(|v| (-2.0..2.0).contains(v)));
    }
}
