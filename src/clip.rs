//! Browser-free logic of the page's Video panel and Live mode, tested natively: the names of a
//! clip's frames and of their masks (as `seggpt video` names its output), which frames a
//! propagation segments, where a frame lies on the media timeline, and the progress line (frame i
//! of n, frames/s, time left). Also the propagation choices that the page offers and `seggpt video`
//! takes ([`Propagate`], [`DEFAULT_NUM_FRAMES`]), here because the page's wasm has no model.

/// What a segmented frame leaves in the cache as the mask of its prompt for the next frames.
///
/// The one definition of this choice: the CLI parses it (`clap::ValueEnum`, feature `cli`) and the
/// browser protocol carries it (`serde`, as `"binary"`, `"colour"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Propagate {
    /// The official rule: white where the prediction's channel mean exceeds 128, black elsewhere,
    /// so every object becomes white in the earlier frames.
    #[default]
    Binary,
    /// Each pixel snapped to the nearest colour of the prompt masks (black = background), so that
    /// several objects keep their own colours from frame to frame.
    Colour,
}

impl Propagate {
    /// Every variant, in the order a user interface lists them.
    pub const ALL: [Propagate; 2] = [Propagate::Binary, Propagate::Colour];

    /// The name used on the command line and in the browser protocol.
    pub fn name(self) -> &'static str {
        match self {
            Propagate::Binary => "binary",
            Propagate::Colour => "colour",
        }
    }
}

/// K, the previous frames kept as extra prompts, when the user does not choose: 4, as in the
/// official README's example (the official code's own default is 0, the user prompt only).
pub const DEFAULT_NUM_FRAMES: usize = 4;

/// Digits of a decoded frame's name: `00000` .. `99999`, DAVIS's naming, so that a folder of the
/// page's frames sorts in frame order for `seggpt video --frames`.
const FRAME_DIGITS: usize = 5;

/// The stem of frame `index` of a decoded video (`00007`); frames picked as image files keep
/// their own stems.
pub fn frame_stem(index: usize) -> String {
    format!("{index:0FRAME_DIGITS$}")
}

/// The file name `seggpt video` writes a frame's mask under.
pub fn mask_name(stem: &str) -> String {
    format!("{stem}.mask.png")
}

/// The frames a propagation segments: `from`, then every `step`-th frame up to the last of
/// `count`. A step of 0 counts as 1.
pub fn planned_frames(count: usize, from: usize, step: usize) -> Vec<usize> {
    (from..count).step_by(step.max(1)).collect()
}

/// A decoded video's timeline: the first frame's presentation time and the frame duration, both
/// in seconds, as the browser reports them for presented frames (`requestVideoFrameCallback`'s
/// `mediaTime`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    pub first: f64,
    pub frame_duration: f64,
}

impl Timeline {
    /// From the media times of frames presented one after the other during a playback: the
    /// smallest positive gap is one frame (a playback may drop frames, never show one twice as
    /// far apart as it is). `None` without two distinct times.
    pub fn from_presented(media_times: &[f64]) -> Option<Self> {
        let first = media_times.iter().copied().fold(f64::INFINITY, f64::min);
        let mut sorted: Vec<f64> = media_times.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Media times are rounded to microseconds by some browsers: gaps below 100 µs are one frame.
        let frame_duration =
            sorted.windows(2).map(|w| w[1] - w[0]).filter(|gap| *gap > 1e-4).fold(f64::INFINITY, f64::min);
        (first.is_finite() && frame_duration.is_finite()).then_some(Timeline { first, frame_duration })
    }

    /// The number of frames in a clip of `duration` seconds.
    pub fn frame_count(&self, duration: f64) -> usize {
        ((duration - self.first) / self.frame_duration).round().max(0.0) as usize
    }

    /// Where to seek for frame `index`: the middle of its display interval, so that rounding in
    /// the browser's seek cannot land on a neighbour.
    pub fn seek_time(&self, index: usize) -> f64 {
        self.first + (index as f64 + 0.5) * self.frame_duration
    }

    /// The index of the frame presented at `media_time`.
    pub fn index_at(&self, media_time: f64) -> usize {
        ((media_time - self.first) / self.frame_duration).round().max(0.0) as usize
    }
}

/// Frames per second over the last few frames, for the progress line and the Live mode.
#[derive(Debug, Default, Clone)]
pub struct FrameRate {
    /// Completion times (seconds) of the most recent frames, oldest first.
    recent: std::collections::VecDeque<f64>,
}

impl FrameRate {
    /// How many frames the rate is measured over: enough to smooth one slow frame, few enough to
    /// follow a change (another tab taking the GPU).
    const WINDOW: usize = 8;

    pub fn new() -> Self {
        Self::default()
    }

    /// A frame finished at `now` seconds.
    pub fn tick(&mut self, now: f64) {
        if self.recent.len() == Self::WINDOW + 1 {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }

    /// Frames per second, once two frames have finished.
    pub fn per_second(&self) -> Option<f64> {
        let (first, last) = (self.recent.front()?, self.recent.back()?);
        let span = last - first;
        (self.recent.len() >= 2 && span > 0.0).then(|| (self.recent.len() - 1) as f64 / span)
    }
}

/// The progress line of a propagation: `frame 3 of 12, 1.5 frames/s, about 6 s left`.
pub fn progress_text(done: usize, total: usize, rate: Option<f64>) -> String {
    match rate {
        Some(rate) if rate > 0.0 => {
            let left = (total.saturating_sub(done)) as f64 / rate;
            format!("frame {done} of {total}, {rate:.2} frames/s, about {} left", duration_text(left))
        }
        _ => format!("frame {done} of {total}"),
    }
}

fn duration_text(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    if seconds < 60 { format!("{seconds} s") } else { format!("{} min {} s", seconds / 60, seconds % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_named_like_davis_and_masks_like_the_cli() {
        assert_eq!(frame_stem(0), "00000");
        assert_eq!(frame_stem(123), "00123");
        assert_eq!(mask_name(&frame_stem(7)), "00007.mask.png");
        assert_eq!(mask_name("frame_a"), "frame_a.mask.png");
        // Names sort in frame order, as `seggpt video --frames` reads a folder.
        let mut names: Vec<String> = [10, 2, 100, 0].map(frame_stem).to_vec();
        names.sort();
        assert_eq!(names, ["00000", "00002", "00010", "00100"]);
    }

    #[test]
    fn plans_every_nth_frame_from_the_start_frame() {
        assert_eq!(planned_frames(5, 0, 1), [0, 1, 2, 3, 4]);
        assert_eq!(planned_frames(10, 1, 3), [1, 4, 7]);
        assert_eq!(planned_frames(4, 0, 0), [0, 1, 2, 3]);
        assert!(planned_frames(3, 3, 1).is_empty());
    }

    #[test]
    fn timeline_from_presented_frames_with_drops() {
        // 25 frames/s, starting at 0, frames 0, 1, 3, 4 presented (2 dropped), out of order.
        let t = Timeline::from_presented(&[0.04, 0.0, 0.12, 0.16]).unwrap();
        assert!((t.frame_duration - 0.04).abs() < 1e-9);
        assert_eq!(t.first, 0.0);
        assert_eq!(t.frame_count(0.48), 12);
        assert!((t.seek_time(3) - 0.14).abs() < 1e-9);
        assert_eq!(t.index_at(0.12), 3);
        assert_eq!(t.index_at(0.1199), 3);
        // A timeline that starts late (an MP4 edit list, a WebM cluster offset).
        let late = Timeline::from_presented(&[0.5, 0.6, 0.7]).unwrap();
        assert_eq!(late.index_at(0.5), 0);
        assert_eq!(late.frame_count(1.5), 10);
        assert!(Timeline::from_presented(&[0.3, 0.3]).is_none());
        assert!(Timeline::from_presented(&[]).is_none());
    }

    #[test]
    fn frame_rate_over_the_last_frames() {
        let mut rate = FrameRate::new();
        assert_eq!(rate.per_second(), None);
        rate.tick(1.0);
        assert_eq!(rate.per_second(), None);
        rate.tick(1.5);
        assert_eq!(rate.per_second(), Some(2.0));
        for i in 0..20 {
            rate.tick(2.0 + f64::from(i) * 0.25);
        }
        assert!((rate.per_second().unwrap() - 4.0).abs() < 1e-9, "only the recent frames count");
    }

    #[test]
    fn progress_line() {
        assert_eq!(progress_text(0, 12, None), "frame 0 of 12");
        assert_eq!(progress_text(3, 12, Some(1.5)), "frame 3 of 12, 1.50 frames/s, about 6 s left");
        assert_eq!(progress_text(0, 200, Some(1.0)), "frame 0 of 200, 1.00 frames/s, about 3 min 20 s left");
    }
}
