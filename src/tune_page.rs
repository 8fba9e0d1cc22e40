//! Pure logic of the page's tuning panel (docs/MODEL.md §19), kept out of the browser code so that
//! it is tested natively: the loss curve's geometry and what the panel says about GPU memory.

/// The points of a loss curve in a `width` x `height` plot with `margin` pixels on every side:
/// step 1 at the left edge, the last step at the right, the smallest loss at the bottom and the
/// largest at the top. Non-finite losses are left out; a flat curve runs through the middle.
pub fn loss_polyline(losses: &[f32], width: f64, height: f64, margin: f64) -> Vec<(f64, f64)> {
    let finite = || losses.iter().copied().filter(|l| l.is_finite());
    let (Some(low), Some(high)) = (finite().reduce(f32::min), finite().reduce(f32::max)) else {
        return Vec::new();
    };
    let (inner_w, inner_h) = ((width - 2.0 * margin).max(0.0), (height - 2.0 * margin).max(0.0));
    let span = f64::from(high - low);
    let last = losses.len().saturating_sub(1).max(1) as f64;
    losses
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &loss)| {
            let x = margin + inner_w * i as f64 / last;
            let up = if span > 0.0 { f64::from(loss - low) / span } else { 0.5 };
            (x, margin + inner_h * (1.0 - up))
        })
        .collect()
}

/// What one tuning step of `batch` pairs takes on the GPU, for the panel: whether it fits the
/// adapter's buffer limit and a sentence saying so.
///
/// `step_bytes[b - 1]`: the memory of a step of `b` pairs beside the weights; `max_batch`: the
/// largest batch whose buffers fit `max_binding` (the adapter's `maxStorageBufferBindingSize`).
pub fn step_memory_note(
    batch: usize,
    step_bytes: &[f64],
    weight_bytes: f64,
    max_batch: usize,
    max_binding: f64,
) -> (bool, String) {
    let limit_mib = max_binding / f64::from(1u32 << 20);
    if max_batch == 0 {
        return (
            false,
            format!(
                "This GPU cannot tune with this model: one step of even 1 pair needs a larger GPU buffer \
                 than the {limit_mib:.0} MiB this browser allows."
            ),
        );
    }
    if batch > max_batch {
        return (
            false,
            format!(
                "{batch} pairs per step need a larger GPU buffer than the {limit_mib:.0} MiB this browser \
                 allows: use at most {max_batch}."
            ),
        );
    }
    match step_bytes.get(batch.max(1) - 1) {
        Some(&step) => (
            true,
            format!(
                "One step of {batch} pair(s) needs about {} of GPU memory beside the model's {} ({} in all).",
                size(step),
                size(weight_bytes),
                size(step + weight_bytes)
            ),
        ),
        None => (false, format!("at most {} pairs per step", step_bytes.len())),
    }
}

/// Bytes as decimal gigabytes, or megabytes below one gigabyte.
fn size(bytes: f64) -> String {
    if bytes >= 1e9 { format!("{:.2} GB", bytes / 1e9) } else { format!("{:.1} MB", bytes / 1e6) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_spans_the_plot_inside_its_margins() {
        let points = loss_polyline(&[2.0, 1.0, 1.5], 100.0, 50.0, 5.0);
        assert_eq!(points, vec![(5.0, 5.0), (50.0, 45.0), (95.0, 25.0)]);
    }

    #[test]
    fn a_flat_or_single_loss_runs_through_the_middle() {
        assert_eq!(loss_polyline(&[0.3], 100.0, 50.0, 5.0), vec![(5.0, 25.0)]);
        assert_eq!(loss_polyline(&[0.3, 0.3], 100.0, 50.0, 0.0), vec![(0.0, 25.0), (100.0, 25.0)]);
    }

    #[test]
    fn non_finite_losses_are_left_out() {
        assert!(loss_polyline(&[], 10.0, 10.0, 0.0).is_empty());
        assert!(loss_polyline(&[f32::NAN], 10.0, 10.0, 0.0).is_empty());
        let points = loss_polyline(&[1.0, f32::INFINITY, 0.0], 10.0, 10.0, 0.0);
        assert_eq!(points, vec![(0.0, 0.0), (10.0, 10.0)]);
    }

    #[test]
    fn the_memory_note_says_what_fits() {
        let steps = [1.5e9, 3e9];
        let weights = 1.25e9;
        let (ok, text) = step_memory_note(2, &steps, weights, 2, 128.0 * 1048576.0);
        assert!(ok, "{text}");
        assert!(text.contains("3.00 GB") && text.contains("1.25 GB") && text.contains("4.25 GB"), "{text}");
        let (ok, text) = step_memory_note(2, &steps, weights, 1, 128.0 * 1048576.0);
        assert!(!ok && text.contains("at most 1") && text.contains("128 MiB"), "{text}");
        let (ok, text) = step_memory_note(1, &[2.5e6], 1e5, 1, 64.0 * 1048576.0);
        assert!(ok && text.contains("2.5 MB") && text.contains("0.1 MB"), "{text}");
        let (ok, text) = step_memory_note(1, &steps, weights, 0, 64.0 * 1048576.0);
        assert!(!ok && text.contains("cannot tune") && text.contains("64 MiB"), "{text}");
    }
}
