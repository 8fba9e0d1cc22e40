//! The CLI under hostile input: it never loses data, never crashes on bad input and never writes
//! a wrong mask silently. Every bad input is made here, in a temporary folder.

mod common;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, stderr};
use seggpt::pipeline::decode_rgb;
use seggpt::weights::{HostTensors, StoreDType, open_model, read_all, write_safetensors};

fn seggpt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_seggpt"))
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    seggpt().args(args).output().expect("the seggpt binary runs")
}

fn segment_fixture(name: &str) -> PathBuf {
    fixtures().join("segment").join(name)
}

/// `segment` with the fixture model and prompt, `targets` and `out_dir`, then `extra`.
fn segment_args(targets: &[&Path], out_dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "segment".into(),
        "--model".into(),
        segment_fixture("model").into(),
        "--prompt".into(),
        segment_fixture("prompt0.png").into(),
        segment_fixture("prompt0_mask.png").into(),
        "--out-dir".into(),
        out_dir.into(),
    ];
    for target in targets {
        args.push("--target".into());
        args.push(target.into());
    }
    args.extend(extra.iter().map(OsString::from));
    args
}

/// Every file below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// A `width x height` gradient image saved as PNG or JPEG (by `path`'s extension).
fn write_image(path: &Path, width: u32, height: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 + seed) as u8, (y * 3 + seed * 5) as u8, ((x ^ y) + seed) as u8])
    });
    image.save(path).unwrap();
}

/// A copy of the fixture model in a temp dir, with its tensors and config edited.
fn edited_model(edit: impl FnOnce(&mut HostTensors, &mut serde_json::Value)) -> tempfile::TempDir {
    let src = segment_fixture("model");
    let mut tensors = read_all(open_model(&src).unwrap().source.as_ref()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut tensors, &mut config);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        write_safetensors(&tensors, StoreDType::F32).unwrap(),
    )
    .unwrap();
    dir
}

/// Runs `command` to its end and returns its exit code and peak resident memory in KiB, from
/// the kernel's accounting of exactly that child.
#[cfg(target_os = "linux")]
#[allow(clippy::zombie_processes, reason = "the child is reaped by wait4, which also reports its memory")]
fn peak_memory_kib(command: &mut Command) -> (Option<i32>, i64) {
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: `rusage` is plain data, and `wait4` writes it for the child just spawned, which
    // nothing else waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss)
}

// 1. Outputs never overwrite each other or an input.

#[test]
fn outputs_keep_the_full_file_name_and_the_folders_below_the_common_root() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("in");
    let (a, b) = (inputs.join("a/img.png"), inputs.join("b/img.png"));
    copy(&segment_fixture("target_a.png"), &a);
    copy(&segment_fixture("target_b.png"), &b);
    let (x_png, x_jpg) = (inputs.join("a/x.png"), inputs.join("a/x.jpg"));
    write_image(&x_png, 20, 30, 1);
    write_image(&x_jpg, 30, 20, 2);
    #[cfg(unix)]
    let odd = {
        use std::os::unix::ffi::OsStrExt;
        let odd = inputs.join("b").join(OsStr::from_bytes(b"t\xff.png"));
        copy(&segment_fixture("target_a.png"), &odd);
        odd
    };
    let out = tmp.path().join("out");
    let mut targets = vec![a.as_path(), b.as_path(), x_png.as_path(), x_jpg.as_path()];
    #[cfg(unix)]
    targets.push(&odd);
    let result = run(&segment_args(&targets, &out, &["--num-labels", "3"]));
    assert!(result.status.success(), "{}", stderr(&result));

    let mut expected: Vec<PathBuf> = ["a/img.png", "a/x.png", "a/x.jpg", "b/img.png"]
        .iter()
        .flat_map(|t| [PathBuf::from(format!("{t}.classes.png")), PathBuf::from(format!("{t}.mask.png"))])
        .collect();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        for suffix in [".mask.png", ".classes.png"] {
            let mut name = b"t\xff.png".to_vec();
            name.extend_from_slice(suffix.as_bytes());
            expected.push(Path::new("b").join(OsStr::from_bytes(&name)));
        }
    }
    expected.sort();
    assert_eq!(files_below(&out), expected);
    // Each mask has its own target's size: nothing was written over another target's result.
    let size = |p: &str| {
        let image = decode_rgb(&std::fs::read(out.join(p)).unwrap(), p).unwrap();
        (image.width(), image.height())
    };
    assert_eq!(size("a/img.png.mask.png"), (23, 82));
    assert_eq!(size("b/img.png.mask.png"), (45, 19));
    assert_eq!(size("a/x.png.mask.png"), (20, 30));
    assert_eq!(size("a/x.jpg.mask.png"), (30, 20));
}

#[test]
fn targets_in_one_folder_give_flat_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("in/a.png"), tmp.path().join("in/b.png"));
    copy(&segment_fixture("target_a.png"), &a);
    copy(&segment_fixture("target_b.png"), &b);
    let out = tmp.path().join("out");
    let result = run(&segment_args(&[&a, &b], &out, &[]));
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(files_below(&out), [PathBuf::from("a.png.mask.png"), PathBuf::from("b.png.mask.png")]);
}

#[test]
fn an_output_that_would_overwrite_an_input_is_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = dir.join("p.png");
    copy(&segment_fixture("target_a.png"), &target);
    // The prompt mask has exactly the name the target's mask would get in this folder.
    let mask = dir.join("p.png.mask.png");
    copy(&segment_fixture("prompt0_mask.png"), &mask);
    let before = std::fs::read(&mask).unwrap();
    let mut args = segment_args(&[&target], dir, &[]);
    let at = args.iter().position(|a| a == segment_fixture("prompt0_mask.png").as_os_str()).unwrap();
    args[at] = mask.clone().into();
    let result = run(&args);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(message.contains("would overwrite the input") && message.contains("p.png.mask.png"), "{message}");
    assert!(!message.contains("loading"), "refused before the model loads: {message}");
    assert_eq!(std::fs::read(&mask).unwrap(), before, "the prompt mask is untouched");
}

#[test]
fn a_target_given_twice_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t.png");
    copy(&segment_fixture("target_a.png"), &target);
    let again = tmp.path().join(".").join("t.png");
    let out = tmp.path().join("out");
    let result = run(&segment_args(&[&target, &again], &out, &[]));
    assert!(!result.status.success());
    assert!(stderr(&result).contains("same target file"), "{}", stderr(&result));
    assert!(!out.exists());
}

// 2. Truncated images are refused, naming the file.

#[test]
fn truncated_jpegs_are_refused_as_target_prompt_image_and_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.jpg");
    write_image(&whole, 64, 48, 3);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = tmp.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = tmp.path().join("out");
    let prompt_image = segment_fixture("prompt0.png");
    let prompt_mask = segment_fixture("prompt0_mask.png");
    let cases: [(&str, [&Path; 3]); 3] = [
        ("target", [&prompt_image, &prompt_mask, &cut]),
        ("prompt image", [&cut, &prompt_mask, &whole]),
        ("prompt mask", [&prompt_image, &cut, &whole]),
    ];
    for (role, [image, mask, target]) in cases {
        let mut args = segment_args(&[target], &out, &[]);
        args[4] = image.into();
        args[5] = mask.into();
        let result = run(&args);
        assert!(!result.status.success(), "{role}");
        let message = stderr(&result);
        assert!(message.contains("cut.jpg") && message.contains("truncated"), "{role}: {message}");
        assert!(!out.exists(), "{role}: nothing written");
    }
    // The whole file is fine.
    let result = run(&segment_args(&[&whole], &out, &[]));
    assert!(result.status.success(), "{}", stderr(&result));
}

// 3. Memory stays flat in the number of targets.

#[cfg(target_os = "linux")]
#[test]
fn memory_does_not_grow_with_the_number_of_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let targets: Vec<PathBuf> = (0..12).map(|i| tmp.path().join(format!("in/t{i}.png"))).collect();
    for (i, target) in targets.iter().enumerate() {
        write_image(target, 2048, 2048, i as u32);
    }
    let mut peaks = Vec::new();
    for count in [1, targets.len()] {
        let refs: Vec<&Path> = targets[..count].iter().map(PathBuf::as_path).collect();
        let out = tmp.path().join(format!("out{count}"));
        let (code, peak) = peak_memory_kib(seggpt().args(segment_args(&refs, &out, &[])));
        assert_eq!(code, Some(0), "{count} targets");
        assert_eq!(files_below(&out).len(), count);
        peaks.push(peak);
    }
    // One decoded 2048 x 2048 target is 12 MiB of RGB; holding all twelve would add 132 MiB.
    let growth_mib = (peaks[1] - peaks[0]) / 1024;
    assert!(growth_mib < 40, "peak memory grew by {growth_mib} MiB from 1 to 12 targets ({peaks:?} KiB)");
}

// 4. Writes are atomic, and Ctrl-C stops cleanly after the current target.

#[cfg(unix)]
#[test]
fn ctrl_c_finishes_the_current_target_and_reports_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let targets: Vec<PathBuf> = (0..40).map(|i| tmp.path().join(format!("in/t{i:02}.png"))).collect();
    for (i, target) in targets.iter().enumerate() {
        write_image(target, 1024, 1024, i as u32);
    }
    let refs: Vec<&Path> = targets.iter().map(PathBuf::as_path).collect();
    let out = tmp.path().join("out");
    let mut child = seggpt()
        .args(segment_args(&refs, &out, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while files_below(&out).iter().all(|p| !p.to_string_lossy().ends_with(".mask.png")) {
        assert!(Instant::now() < deadline, "no output appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let result = child.wait_with_output().unwrap();
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(130), "{message}");
    let written = files_below(&out);
    assert!(!written.is_empty() && written.len() < targets.len(), "{written:?}");
    assert!(
        message.contains(&format!("interrupted: {} of {} targets written", written.len(), targets.len())),
        "{message}"
    );
    for file in &written {
        let name = file.to_string_lossy();
        assert!(name.ends_with(".png.mask.png"), "no temporary file is left: {name}");
        decode_rgb(&std::fs::read(out.join(file)).unwrap(), &name).expect("every written mask is whole");
    }
}

// 7. Non-finite values are errors, never a black mask; an earlier result survives a failed run.

#[test]
fn a_forward_pass_that_overflows_is_an_error_and_keeps_the_earlier_result() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t.png");
    copy(&segment_fixture("target_a.png"), &target);
    let out = tmp.path().join("out");
    let result = run(&segment_args(&[&target], &out, &[]));
    assert!(result.status.success(), "{}", stderr(&result));
    let mask = out.join("t.png.mask.png");
    let good = std::fs::read(&mask).unwrap();

    // Finite weights so large that the head overflows f32.
    let model = edited_model(|tensors, _| {
        let (_, values) = tensors.get_mut("decoder.decoder_pred.head.weight").unwrap();
        values.iter_mut().enumerate().for_each(|(i, v)| *v = if i % 2 == 0 { 3e38 } else { -3e38 });
    });
    let mut args = segment_args(&[&target], &out, &[]);
    args[2] = model.path().into();
    let result = run(&args);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(message.contains("non-finite") && message.contains("t.png"), "{message}");
    assert_eq!(std::fs::read(&mask).unwrap(), good, "the earlier result is kept");
}

#[test]
fn a_nan_weight_is_refused_naming_the_tensor_and_the_count() {
    let name = "model.encoder.layers.1.mlp.lin1.weight";
    let model = edited_model(|tensors, _| {
        let (_, values) = tensors.get_mut(name).unwrap();
        values[3] = f32::NAN;
        values[7] = f32::INFINITY;
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut args = segment_args(&[&segment_fixture("target_a.png")], &tmp.path().join("out"), &[]);
    args[2] = model.path().into();
    let result = run(&args);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(message.contains(name) && message.contains("2 non-finite"), "{message}");
    assert!(files_below(&tmp.path().join("out")).is_empty());
}

#[test]
fn convert_to_f16_refuses_values_beyond_its_range_unless_clamped() {
    let name = "decoder.decoder_pred.conv.bias";
    let model = edited_model(|tensors, _| {
        tensors.get_mut(name).unwrap().1[0] = 1e5;
    });
    let output = model.path().join("out/model.safetensors");
    std::fs::create_dir(model.path().join("out")).unwrap();
    let args = |clamp: bool| {
        let mut args: Vec<OsString> = vec![
            "convert".into(),
            "--model".into(),
            model.path().into(),
            "--output".into(),
            output.clone().into(),
            "--dtype".into(),
            "f16".into(),
        ];
        if clamp {
            args.push("--clamp-f16".into());
        }
        args
    };
    let result = run(&args(false));
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(message.contains(name) && message.contains("1 value(s)") && message.contains("1e5"), "{message}");
    assert!(message.contains("--clamp-f16"), "{message}");
    assert!(!output.exists());
    let result = run(&args(true));
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(stderr(&result).contains("clamped") && stderr(&result).contains(name), "{}", stderr(&result));
    let converted = common::read_tensors(&output);
    use seggpt::weights::TensorSource;
    assert_eq!(converted.read_f32(name).unwrap()[0], 65504.0);
}

// 5. Configs are validated before anything is allocated, by every command.

#[test]
fn configs_that_cannot_be_built_are_refused_by_bench_segment_and_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(segment_fixture("model/config.json")).unwrap())
            .unwrap();
    let edited = |field: &str, value: serde_json::Value| {
        let mut config = fixture.clone();
        config[field] = value;
        config.to_string()
    };
    let cases = [
        (edited("intermediate_hidden_state_indices", serde_json::json!([3, 3])), "strictly increasing"),
        (edited("image_size", serde_json::json!([65536, 65536])), "tokens"),
        (edited("image_size", serde_json::json!(9223372036854775807u64)), "image_size"),
        (edited("hidden_size", serde_json::json!(0)), "hidden_size 0"),
        (edited("decoder_hidden_size", serde_json::json!(0)), "decoder_hidden_size 0"),
        (edited("layer_norm_eps", serde_json::json!(-1e-6)), "layer_norm_eps"),
        ("[32, 4, 4]".to_string(), "JSON object"),
    ];
    for (text, needle) in cases {
        let config = tmp.path().join("config.json");
        std::fs::write(&config, &text).unwrap();
        let start = Instant::now();
        let result = run(&[OsStr::new("bench"), OsStr::new("--config"), config.as_os_str()]);
        assert_eq!(result.status.code(), Some(1), "bench, {text}: {}", stderr(&result));
        assert!(stderr(&result).contains(needle), "bench, {text}: {}", stderr(&result));
        assert!(start.elapsed() < Duration::from_secs(20), "bench, {text}: refused at once");

        let model = edited_model(|_, _| {});
        std::fs::write(model.path().join("config.json"), &text).unwrap();
        let out = tmp.path().join("converted.safetensors");
        let convert = run(&[
            OsStr::new("convert"),
            OsStr::new("--model"),
            model.path().as_os_str(),
            OsStr::new("--output"),
            out.as_os_str(),
        ]);
        assert_eq!(convert.status.code(), Some(1), "convert, {text}: {}", stderr(&convert));
        assert!(stderr(&convert).contains(needle), "convert, {text}: {}", stderr(&convert));
        assert!(!out.exists());
        let mut args = segment_args(&[&segment_fixture("target_a.png")], &tmp.path().join("out"), &[]);
        args[2] = model.path().into();
        let segment = run(&args);
        assert_eq!(segment.status.code(), Some(1), "segment, {text}: {}", stderr(&segment));
        assert!(stderr(&segment).contains(needle), "segment, {text}: {}", stderr(&segment));
    }
}

// 6. --num-labels is checked with the other arguments.

#[test]
fn num_labels_out_of_range_is_refused_before_anything_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    for value in ["0", "256", "1000000000", "18446744073709551615", "three"] {
        let mut args = segment_args(&[&segment_fixture("target_a.png")], &tmp.path().join("out"), &[]);
        args[2] = tmp.path().join("no-such-model").into();
        args.push("--num-labels".into());
        args.push(value.into());
        let start = Instant::now();
        let result = run(&args);
        assert_eq!(result.status.code(), Some(2), "{value}: {}", stderr(&result));
        let message = stderr(&result);
        assert!(message.contains("--num-labels") && message.contains("1 to 255"), "{value}: {message}");
        assert!(start.elapsed() < Duration::from_secs(10), "{value}");
    }
}

// 8. Headers and sizes are checked before reading; only regular files are read.

#[cfg(unix)]
#[test]
fn pipes_devices_and_folders_are_refused_as_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.png");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let folder = tmp.path().join("folder.png");
    std::fs::create_dir(&folder).unwrap();
    let out = tmp.path().join("out");
    let inputs =
        [(fifo.clone(), "named pipe"), (PathBuf::from("/dev/zero"), "device"), (folder.clone(), "directory")];
    for (input, kind) in inputs {
        for role in ["target", "prompt image", "model"] {
            let mut args = segment_args(&[&segment_fixture("target_a.png")], &out, &[]);
            let at = match role {
                "model" => 2,
                "prompt image" => 4,
                _ => args.len() - 1,
            };
            args[at] = if role == "model" && kind == "directory" {
                // A model directory whose weights file is itself a folder.
                std::fs::create_dir_all(folder.join("model.safetensors")).unwrap();
                copy(&segment_fixture("model/config.json"), &folder.join("config.json"));
                folder.clone().into()
            } else {
                input.clone().into()
            };
            let mut child =
                seggpt().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    child.kill().unwrap();
                    panic!("{role} {}: the run hangs", input.display());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let result = child.wait_with_output().unwrap();
            let message = stderr(&result);
            assert_eq!(result.status.code(), Some(1), "{role} {kind}: {message}");
            assert!(
                message.contains(kind) && message.contains("not a regular file"),
                "{role} {kind}: {message}"
            );
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_huge_junk_weights_file_is_refused_from_its_header_without_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = edited_model(|_, _| {});
    let weights = model.path().join("model.safetensors");
    // A sparse 2 GiB file: its first 8 bytes announce a 5-byte header, then zeros.
    let file = std::fs::File::create(&weights).unwrap();
    use std::io::Write;
    (&file).write_all(&5u64.to_le_bytes()).unwrap();
    file.set_len(2 << 30).unwrap();
    let mut args = segment_args(&[&segment_fixture("target_a.png")], &tmp.path().join("out"), &[]);
    args[2] = model.path().into();
    let start = Instant::now();
    let (code, peak_kib) = peak_memory_kib(seggpt().args(&args));
    assert_eq!(code, Some(1));
    assert!(peak_kib < 200 << 10, "{peak_kib} KiB");
    assert!(start.elapsed() < Duration::from_secs(20));
    let result = run(&args);
    assert!(stderr(&result).contains("header"), "{}", stderr(&result));

    // A header whose length field is larger than the file.
    std::fs::write(&weights, [&1000u64.to_le_bytes()[..], b"{}"].concat()).unwrap();
    let result = run(&args);
    let message = stderr(&result);
    assert!(message.contains("1000-byte header") && message.contains("only 10 bytes"), "{message}");
}

#[cfg(unix)]
#[test]
fn an_image_file_over_the_size_limit_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = tmp.path().join("huge.png");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(300 << 20).unwrap();
    let result = run(&segment_args(&[&huge], &tmp.path().join("out"), &[]));
    assert_eq!(result.status.code(), Some(1));
    let message = stderr(&result);
    assert!(message.contains("huge.png") && message.contains("too large"), "{message}");
}

// 9. Output problems are found before any work.

#[test]
fn an_unusable_out_dir_is_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    for out in [file.clone(), file.join("out")] {
        let result = run(&segment_args(&[&segment_fixture("target_a.png")], &out, &[]));
        assert_eq!(result.status.code(), Some(1));
        let message = stderr(&result);
        assert!(message.contains("output folder") && message.contains("file.txt"), "{message}");
        assert!(!message.contains("loading"), "{message}");
    }
}

#[test]
fn an_output_name_over_255_bytes_is_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    // 245 bytes: a valid name, also with ".mask.png" appended, but not with ".classes.png".
    let target = tmp.path().join(format!("{}.png", "t".repeat(241)));
    copy(&segment_fixture("target_a.png"), &target);
    let ok = tmp.path().join("ok.png");
    copy(&segment_fixture("target_b.png"), &ok);
    let out = tmp.path().join("out");
    let result = run(&segment_args(&[&ok, &target], &out, &["--num-labels", "3"]));
    assert_eq!(result.status.code(), Some(1));
    let message = stderr(&result);
    assert!(message.contains("257 bytes") && message.contains("at most 255"), "{message}");
    assert!(!message.contains("loading"), "{message}");
    assert!(files_below(&out).is_empty(), "no partial batch");
}

// 10. bench --runs 0, --attention, and no display noise from the GPU backend.

#[test]
fn bench_needs_at_least_one_run() {
    let result = run(&["bench", "--runs", "0"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("--runs") && stderr(&result).contains("at least 1"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn bench_names_the_attention_it_ran_and_refuses_an_unknown_one() {
    let result = run(&["bench", "--attention", "flash"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(stderr(&result).contains("possible values: fused, reference"), "{}", stderr(&result));
    // The kernel is a GPU shader: on the CPU backend the reference path runs, and the report says so.
    let config = segment_fixture("model/config.json");
    let result = run(&[
        OsStr::new("bench"),
        OsStr::new("--attention"),
        OsStr::new("fused"),
        OsStr::new("--runs"),
        OsStr::new("1"),
        OsStr::new("--config"),
        config.as_os_str(),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("backend=cpu(flex) attention=reference"), "{stdout}");
}

#[test]
fn bench_on_wgpu_prints_no_wayland_noise() {
    let result = seggpt()
        .args([
            OsStr::new("bench"),
            OsStr::new("--backend"),
            OsStr::new("wgpu"),
            OsStr::new("--runs"),
            OsStr::new("1"),
            OsStr::new("--config"),
            segment_fixture("model/config.json").as_os_str(),
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    let message = stderr(&result);
    assert!(result.status.success(), "{message}");
    assert!(!message.contains("XDG_RUNTIME_DIR"), "{message}");
}

/// No command writes over a file it reads: `convert` over its own weights (a directory's or a
/// `.pth` given directly), `bench --output` over the model, `infer --output` over its inputs.
/// Each is refused before anything is written, and the input keeps its bytes.
#[test]
fn no_command_writes_its_output_over_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    for file in ["config.json", "model.safetensors"] {
        copy(&segment_fixture("model").join(file), &model.join(file));
    }
    let weights = model.join("model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let inputs = fixtures().join("models/tiny-k1/inputs.safetensors");
    let local_inputs = dir.path().join("inputs.safetensors");
    copy(&inputs, &local_inputs);
    let inputs_before = std::fs::read(&local_inputs).unwrap();
    let weights_by_another_path = model.join("../model/./model.safetensors");
    let cases: Vec<Vec<OsString>> = vec![
        vec![
            "convert".into(),
            "--model".into(),
            model.clone().into(),
            "--output".into(),
            weights.clone().into(),
            "--dtype".into(),
            "q8".into(),
        ],
        vec![
            "convert".into(),
            "--model".into(),
            weights.clone().into(),
            "--output".into(),
            weights_by_another_path.into(),
        ],
        vec![
            "bench".into(),
            "--model".into(),
            model.clone().into(),
            "--output".into(),
            weights.clone().into(),
        ],
        vec![
            "infer".into(),
            "--model".into(),
            model.clone().into(),
            "--inputs".into(),
            local_inputs.clone().into(),
            "--output".into(),
            local_inputs.clone().into(),
        ],
    ];
    for args in cases {
        let out = run(&args);
        let message = stderr(&out);
        assert!(!out.status.success(), "{args:?} should be refused: {message}");
        assert!(message.contains("would destroy what this run reads"), "{args:?}: {message}");
        assert!(!message.contains("loading"), "{args:?}: refused only after loading: {message}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), before, "the weights were changed");
    assert_eq!(std::fs::read(&local_inputs).unwrap(), inputs_before, "the inputs were changed");
    assert_eq!(files_below(&model).len(), 2, "{:?}", files_below(&model));
}

/// A prompt's mask must be its image's size, must mark something, and a grey class-index mask
/// given without `--num-labels` is not read as near-black colours: each is refused by name
/// before the model loads, by `segment` and `tune` alike, and nothing is written.
#[test]
fn prompt_masks_that_do_not_fit_their_image_or_mark_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("prompt.png");
    write_image(&image, 24, 16, 3);
    let save = |name: &str, mask: image::RgbImage| {
        let path = dir.path().join(name);
        mask.save(&path).unwrap();
        path
    };
    let small = save("small.png", image::RgbImage::from_pixel(12, 8, image::Rgb([255, 0, 0])));
    let black = save("black.png", image::RgbImage::new(24, 16));
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_fn(24, 16, |x, _| image::Luma([u8::from(x > 11)])).save(&grey).unwrap();
    let cases = [
        (&small, vec!["small.png is 12x8 pixels", "prompt.png is 24x16", "must be its image's size"]),
        (&black, vec!["black.png", "marks no object", "every pixel is black"]),
        (&grey, vec!["grey.png", "class-index mask", "--num-labels 1"]),
    ];
    let target = segment_fixture("target_a.png");
    for (mask, needles) in cases {
        let out_dir = dir.path().join("out");
        let segment: Vec<OsString> = vec![
            "segment".into(),
            "--model".into(),
            segment_fixture("model").into(),
            "--prompt".into(),
            image.clone().into(),
            mask.into(),
            "--target".into(),
            target.clone().into(),
            "--out-dir".into(),
            out_dir.clone().into(),
        ];
        let tune: Vec<OsString> = vec![
            "tune".into(),
            "--model".into(),
            segment_fixture("model").into(),
            "--pair".into(),
            image.clone().into(),
            mask.into(),
            "--out".into(),
            dir.path().join("tuned/p.safetensors").into(),
            "--steps".into(),
            "1".into(),
        ];
        for args in [segment, tune] {
            let out = run(&args);
            let message = stderr(&out);
            assert!(!out.status.success(), "{args:?} should be refused: {message}");
            for needle in &needles {
                assert!(message.contains(needle), "`{needle}` not in: {message}");
            }
            assert!(!message.contains("loading"), "refused only after loading: {message}");
        }
        assert!(!out_dir.exists() && !dir.path().join("tuned").exists(), "an output was written");
    }
    // The same grey mask with its class count is a prompt.
    let out_dir = dir.path().join("labelled");
    let mut args = segment_args(&[&target], &out_dir, &["--num-labels", "1"]);
    args[4] = image.clone().into();
    args[5] = grey.clone().into();
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A COCO or YOLO export tells classes apart by the prompts' colours, at most 16: masks with 18
/// colours are refused with the way out (`--num-labels`), not cut to 16 classes without a word.
#[test]
fn more_prompt_colours_than_classes_are_refused_for_exports() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("prompt.png");
    write_image(&image, 36, 10, 1);
    let mask = dir.path().join("mask.png");
    // 18 vertical stripes of 2 pixels, each its own colour.
    image::RgbImage::from_fn(36, 10, |x, _| {
        let i = (x / 2) as u8;
        image::Rgb([40 + i * 11, 255 - i * 13, 30 + (i % 3) * 90])
    })
    .save(&mask)
    .unwrap();
    let out_dir = dir.path().join("out");
    let target = segment_fixture("target_a.png");
    let mut args = segment_args(&[&target], &out_dir, &["--export", "coco"]);
    args[4] = image.into();
    args[5] = mask.into();
    let out = run(&args);
    let message = stderr(&out);
    assert!(!out.status.success(), "{message}");
    assert!(message.contains("18 colours") && message.contains("--num-labels"), "{message}");
    assert!(!out_dir.exists(), "an output was written");
}
