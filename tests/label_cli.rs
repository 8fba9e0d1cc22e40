//! Labelling a dataset with `seggpt segment` (folders, lists, resume, shards, COCO and YOLO
//! exports) and `seggpt merge-labels`, with the fixture model; and every bad input refused.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, stderr};
use seggpt::export::{CocoFile, Components, Segmentation, image_annotations, yolo};
use seggpt::pipeline::decode_class_map;

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seggpt")).args(args).output().expect("the seggpt binary runs")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join("segment").join(name)
}

/// `segment` with the fixture model and prompt, then `extra`.
fn segment(extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut args: Vec<OsString> = vec![
        "segment".into(),
        "--model".into(),
        fixture("model").into(),
        "--prompt".into(),
        fixture("prompt0.png").into(),
        fixture("prompt0_mask.png").into(),
    ];
    args.extend(extra.iter().map(|a| a.as_ref().to_os_string()));
    run(&args)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", stderr(out));
}

fn refused(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "should fail: {}", stderr(out));
    let message = stderr(out);
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
}

/// A dataset folder: `a/x.png`, `b/y.png`, `b/deep/w.jpg`, `z.png`, and files to be ignored.
fn dataset(root: &Path) -> PathBuf {
    let data = root.join("data");
    for (from, to) in [("target_a.png", "a/x.png"), ("target_b.png", "b/y.png"), ("target_a.png", "z.png")] {
        std::fs::create_dir_all(data.join(to).parent().unwrap()).unwrap();
        std::fs::copy(fixture(from), data.join(to)).unwrap();
    }
    std::fs::create_dir_all(data.join("b/deep")).unwrap();
    image::RgbImage::from_fn(30, 20, |x, y| image::Rgb([(x * 8) as u8, (y * 12) as u8, 90]))
        .save(data.join("b/deep/w.jpg"))
        .unwrap();
    std::fs::write(data.join("notes.txt"), "not an image").unwrap();
    std::fs::write(data.join(".hidden.png"), "hidden, skipped").unwrap();
    data
}

const IMAGES: [&str; 4] = ["a/x.png", "b/deep/w.jpg", "b/y.png", "z.png"];

/// Every file below `dir`, relative, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn read_coco(path: &Path) -> CocoFile {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

#[test]
fn a_folder_is_labelled_recursively_with_coco_and_yolo_matching_the_class_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let result = segment(&[
        &"--targets",
        &data,
        &"--out-dir",
        &out,
        &"--num-labels",
        &"3",
        &"--export",
        &"coco,yolo,classes",
    ]);
    ok(&result);
    let mut expected = vec!["coco.json".to_string(), "seggpt-run.json".to_string()];
    for image in IMAGES {
        let stem = image.rsplit_once('.').unwrap().0;
        expected.extend([
            format!("{image}.classes.png"),
            format!("{image}.coco.json"),
            format!("{stem}.txt"),
        ]);
    }
    expected.sort();
    assert_eq!(files_below(&out), expected);

    let coco = read_coco(&out.join("coco.json"));
    let names: Vec<&str> = coco.images.iter().map(|i| i.file_name.as_str()).collect();
    assert_eq!(names, IMAGES);
    assert_eq!(
        coco.categories.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["class_1", "class_2", "class_3"]
    );
    // The run's file holds exactly the annotations of each written class map, renumbered.
    let mut next_id = 1;
    for image in &coco.images {
        let classes = out.join(format!("{}.classes.png", image.file_name));
        let map = decode_class_map(&std::fs::read(&classes).unwrap(), "classes").unwrap();
        assert_eq!((map.width(), map.height()), (image.width, image.height));
        let components = Components::of(&map, 1);
        let own: Vec<_> = coco.annotations.iter().filter(|a| a.image_id == image.id).collect();
        let expected = image_annotations(&components, false);
        assert_eq!(own.len(), expected.len(), "{}", image.file_name);
        for (ours, theirs) in own.iter().zip(&expected) {
            assert_eq!(ours.id, next_id);
            next_id += 1;
            assert_eq!(
                (&ours.segmentation, ours.area, ours.bbox),
                (&theirs.segmentation, theirs.area, theirs.bbox)
            );
            assert_eq!(ours.category_id, theirs.category_id);
        }
        let stem = image.file_name.rsplit_once('.').unwrap().0;
        let text = std::fs::read_to_string(out.join(format!("{stem}.txt"))).unwrap();
        assert_eq!(text, yolo::label_text(&components), "{}", image.file_name);
    }
    assert!(next_id > 4, "the fixture model finds some instances");
}

#[test]
fn a_second_run_skips_what_is_done_and_overwrite_redoes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let args: [&dyn AsRef<std::ffi::OsStr>; 6] =
        [&"--targets", &data, &"--out-dir", &out, &"--export", &"masks,coco"];
    ok(&segment(&args));
    let first = read_coco(&out.join("coco.json"));
    // One output gone: only that target is segmented again; the run's file is whole again.
    std::fs::remove_file(out.join("b/y.png.mask.png")).unwrap();
    let again = segment(&args);
    ok(&again);
    assert!(stderr(&again).contains("4 target(s): 1 to segment, 3 already done"), "{}", stderr(&again));
    assert_eq!(read_coco(&out.join("coco.json")), first);
    let nothing = segment(&args);
    assert!(
        stderr(&nothing).contains("0 to segment, 4 already done") && !stderr(&nothing).contains("loading")
    );
    let mut overwrite = args.to_vec();
    overwrite.push(&"--overwrite");
    let redo = segment(&overwrite);
    ok(&redo);
    assert!(stderr(&redo).contains("4 to segment, 0 already done"), "{}", stderr(&redo));
    assert_eq!(read_coco(&out.join("coco.json")), first, "the same inputs give the same labels");
}

#[test]
fn shards_split_the_targets_and_merge_into_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let whole = tmp.path().join("whole");
    ok(&segment(&[&"--targets", &data, &"--out-dir", &whole, &"--export", &"coco", &"--polygons"]));
    let out = tmp.path().join("out");
    let mut shares = Vec::new();
    for index in 0..3 {
        let shard = format!("{index}/3");
        ok(&segment(&[
            &"--targets",
            &data,
            &"--out-dir",
            &out,
            &"--export",
            &"coco",
            &"--polygons",
            &"--shard",
            &shard,
        ]));
        let file = out.join(format!("coco.shard-{index}-of-3.json"));
        shares.push(read_coco(&file).images.into_iter().map(|i| i.file_name).collect::<Vec<_>>());
    }
    let mut all: Vec<String> = shares.concat();
    all.sort();
    assert_eq!(all, IMAGES, "the shares are disjoint and cover every target: {shares:?}");
    // The same shares every time.
    let repeat = segment(&[
        &"--targets",
        &data,
        &"--out-dir",
        &out,
        &"--export",
        &"coco",
        &"--polygons",
        &"--shard",
        &"1/3",
    ]);
    assert!(stderr(&repeat).contains(&format!("{} already done", shares[1].len())), "{}", stderr(&repeat));

    // More shares than targets: some are empty, and still merge.
    let many = tmp.path().join("many");
    for index in 0..8 {
        let shard = format!("{index}/8");
        ok(&segment(&[
            &"--targets",
            &data,
            &"--out-dir",
            &many,
            &"--export",
            &"coco",
            &"--polygons",
            &"--shard",
            &shard,
        ]));
    }
    let mut args: Vec<OsString> =
        vec!["merge-labels".into(), "--output".into(), many.join("all.json").into()];
    args.extend((0..8).map(|i| many.join(format!("coco.shard-{i}-of-8.json")).into_os_string()));
    ok(&run(&args));
    assert_eq!(read_coco(&many.join("all.json")), read_coco(&whole.join("coco.json")));

    let merged = tmp.path().join("merged.json");
    let inputs: Vec<PathBuf> = (0..3).map(|i| out.join(format!("coco.shard-{i}-of-3.json"))).collect();
    let mut args: Vec<OsString> = vec!["merge-labels".into(), "--output".into(), merged.clone().into()];
    args.extend(inputs.iter().map(|p| p.clone().into_os_string()));
    ok(&run(&args));
    let merged = read_coco(&merged);
    assert_eq!(merged, read_coco(&whole.join("coco.json")));
    assert!(merged.annotations.iter().all(|a| matches!(a.segmentation, Segmentation::Polygons(_))));

    // A share missing, or given twice, is refused.
    let missing = run(&[
        "merge-labels".as_ref(),
        "--output".as_ref(),
        tmp.path().join("m.json").as_os_str(),
        inputs[0].as_os_str(),
        inputs[2].as_os_str(),
    ]);
    refused(&missing, &["share(s) 1/3 missing"]);
    let twice = run(&[
        "merge-labels".as_ref(),
        "--output".as_ref(),
        tmp.path().join("m.json").as_os_str(),
        inputs[0].as_os_str(),
        inputs[0].as_os_str(),
        inputs[1].as_os_str(),
        inputs[2].as_os_str(),
    ]);
    refused(&twice, &["both share 0/3"]);
    assert!(!tmp.path().join("m.json").exists());
}

#[test]
fn a_target_list_keeps_paths_relative_to_the_common_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let list = tmp.path().join("list.txt");
    std::fs::write(
        &list,
        format!("{}\n\n{}\r\n", data.join("a/x.png").display(), data.join("b/y.png").display()),
    )
    .unwrap();
    let out = tmp.path().join("out");
    ok(&segment(&[&"--targets-from", &list, &"--out-dir", &out]));
    assert_eq!(files_below(&out), ["a/x.png.mask.png", "b/y.png.mask.png", "seggpt-run.json"]);
}

/// A list file naming `paths` (below `data`), one a line.
fn list_of(path: &Path, data: &Path, paths: &[&str]) -> PathBuf {
    let lines: Vec<String> = paths.iter().map(|p| format!("{}\n", data.join(p).display())).collect();
    std::fs::write(path, lines.concat()).unwrap();
    path.to_path_buf()
}

#[test]
fn a_listed_target_outside_the_first_runs_folder_moves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let list = list_of(&tmp.path().join("list.txt"), &data, &["b/y.png", "b/deep/w.jpg"]);
    ok(&segment(&[&"--targets-from", &list, &"--out-dir", &out]));
    let laid_out = ["deep/w.jpg.mask.png", "seggpt-run.json", "y.png.mask.png"];
    // One more file from another folder would move the common folder up, and every output with
    // it: refused, naming the file and the folder the out-dir is laid out from.
    let stray = list_of(&tmp.path().join("stray.txt"), &data, &["b/y.png", "b/deep/w.jpg", "a/x.png"]);
    let result = segment(&[&"--targets-from", &stray, &"--out-dir", &out]);
    refused(&result, &["a/x.png is outside", "seggpt-run.json", "--overwrite"]);
    assert_eq!(files_below(&out), laid_out);
    // A list of fewer files keeps their outputs where they are: done, not redone elsewhere.
    let fewer = list_of(&tmp.path().join("fewer.txt"), &data, &["b/deep/w.jpg"]);
    let again = segment(&[&"--targets-from", &fewer, &"--out-dir", &out]);
    ok(&again);
    assert!(stderr(&again).contains("1 target(s): 0 to segment, 1 already done"), "{}", stderr(&again));
    assert_eq!(files_below(&out), laid_out);
    // --overwrite lays the folder out again from the new common folder.
    ok(&segment(&[&"--targets-from", &stray, &"--out-dir", &out, &"--overwrite"]));
    for moved in ["a/x.png.mask.png", "b/y.png.mask.png", "b/deep/w.jpg.mask.png"] {
        assert!(out.join(moved).is_file(), "{moved}");
    }
}

#[test]
fn a_rerun_with_other_settings_is_refused_naming_them_and_overwrite_redoes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let base: [&dyn AsRef<std::ffi::OsStr>; 6] =
        [&"--targets", &data, &"--out-dir", &out, &"--export", &"coco"];
    let with = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        segment(&args)
    };
    ok(&with(&[]));
    let first = read_coco(&out.join("coco.json"));
    let (prompt1, mask1) = (fixture("prompt1.png"), fixture("prompt1_mask.png"));
    let cases: [(&[&dyn AsRef<std::ffi::OsStr>], &str); 6] = [
        (&[&"--min-area", &"20"], "min_area: 1 -> 20"),
        (&[&"--polygons"], "polygons: false -> true"),
        (&[&"--export", &"coco,yolo"], "export: [\"coco\"] -> [\"coco\",\"yolo\"]"),
        (&[&"--num-labels", &"3"], "num_labels: null -> 3"),
        (&[&"--embedding-type", &"semantic"], "embedding_type"),
        (&[&"--prompt", &prompt1, &mask1], "prompt_sha256"),
    ];
    for (extra, needle) in cases {
        let result = with(extra);
        refused(&result, &[needle, "other settings", "seggpt-run.json", "--overwrite"]);
        assert!(!stderr(&result).contains("loading"), "refused before the model loads");
    }
    assert_eq!(read_coco(&out.join("coco.json")), first, "the run's file is untouched");
    assert!(out.join("seggpt-run.json").is_file());
    // --overwrite redoes every output with the new settings, and the record follows.
    let redo = with(&[&"--min-area", &"20", &"--overwrite"]);
    ok(&redo);
    assert!(stderr(&redo).contains("4 to segment, 0 already done"), "{}", stderr(&redo));
    let kept = read_coco(&out.join("coco.json"));
    assert!(kept.annotations.iter().all(|a| a.area >= 20.0));
    assert!(kept.annotations.len() < first.annotations.len());
    let again = with(&[&"--min-area", &"20"]);
    ok(&again);
    assert!(stderr(&again).contains("0 to segment, 4 already done"), "{}", stderr(&again));
    refused(&with(&[]), &["min_area: 20 -> 1"]);
    // Outputs without a record (an older seggpt's) are not trusted either.
    std::fs::remove_file(out.join("seggpt-run.json")).unwrap();
    refused(&with(&[&"--min-area", &"20"]), &["no record of the settings", "--overwrite"]);
}

#[test]
fn a_broken_label_file_is_redone_not_counted_done() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let args: [&dyn AsRef<std::ffi::OsStr>; 6] =
        [&"--targets", &data, &"--out-dir", &out, &"--export", &"masks,coco,yolo"];
    ok(&segment(&args));
    let first = read_coco(&out.join("coco.json"));
    let yolo_text = std::fs::read(out.join("z.txt")).unwrap();
    let coco_piece = out.join("a/x.png.coco.json");
    let bytes = std::fs::read(&coco_piece).unwrap();
    std::fs::write(&coco_piece, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(out.join("z.txt"), "7 0.5 0.5\n").unwrap();
    let mask = out.join("b/y.png.mask.png");
    let bytes = std::fs::read(&mask).unwrap();
    std::fs::write(&mask, &bytes[..bytes.len() - 12]).unwrap();
    let again = segment(&args);
    ok(&again);
    let message = stderr(&again);
    assert!(message.contains("4 target(s): 3 to segment, 1 already done"), "{message}");
    for broken in
        ["x.png.coco.json is not a whole coco output", "z.txt is not a whole yolo output", "y.png.mask.png"]
    {
        assert!(message.contains(broken), "{broken}: {message}");
    }
    assert_eq!(read_coco(&out.join("coco.json")), first);
    assert_eq!(std::fs::read(out.join("z.txt")).unwrap(), yolo_text);
}

#[test]
fn min_area_drops_small_instances_and_class_names_come_from_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let names = tmp.path().join("names.txt");
    std::fs::write(&names, "cell\nnucleus\n").unwrap();
    let out = tmp.path().join("out");
    ok(&segment(&[&"--targets", &data, &"--out-dir", &out, &"--export", &"coco,classes"]));
    let all = read_coco(&out.join("coco.json"));
    // Two prompt colours in the fixture's mask: two classes, named from the file.
    let big = tmp.path().join("big");
    ok(&segment(&[
        &"--targets",
        &data,
        &"--out-dir",
        &big,
        &"--export",
        &"coco",
        &"--min-area",
        &"20",
        &"--classes",
        &names,
    ]));
    let kept = read_coco(&big.join("coco.json"));
    assert_eq!(kept.categories.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["cell", "nucleus"]);
    assert!(kept.annotations.iter().all(|a| a.area >= 20.0));
    let expected = all.annotations.iter().filter(|a| a.area >= 20.0).count();
    assert_eq!(kept.annotations.len(), expected);
    assert!(expected < all.annotations.len(), "some instances are below 20 pixels");
    // Without --num-labels the class map holds the nearest prompt colour's index.
    let map = decode_class_map(&std::fs::read(out.join("a/x.png.classes.png")).unwrap(), "c").unwrap();
    assert!(map.as_raw().iter().all(|&c| c <= 2));
}

// Bad inputs: each refused in plain words, before anything is written.

#[test]
fn bad_shard_specs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    for bad in ["3/3", "x", "1/0", "-1/2"] {
        let result = segment(&[&"--targets", &data, &"--out-dir", &out, &format!("--shard={bad}")]);
        assert_eq!(result.status.code(), Some(2), "{bad}");
        refused(&result, &["--shard", "I from 0 to N - 1"]);
    }
    // A count no merge could track (it would allocate a slot per share) is refused at once.
    for too_many in ["0/4294967295", "0/50000000"] {
        let result = segment(&[&"--targets", &data, &"--out-dir", &out, &format!("--shard={too_many}")]);
        assert_eq!(result.status.code(), Some(2), "{too_many}");
        refused(&result, &["--shard", "1 to 100000 shares"]);
    }
    assert!(!out.exists());
}

/// A COCO file as `segment` writes it for one 3 x 1 image of two instances, as JSON to spoil.
fn coco_json(file_name: &str, shard: Option<(u64, u64)>) -> serde_json::Value {
    use seggpt::export::coco::{categories, default_class_names};
    let map = seggpt::pipeline::ClassMap::new(3, 1, vec![1, 0, 2]).unwrap();
    let file =
        CocoFile::single(file_name, &Components::of(&map, 1), categories(&default_class_names(2)), false);
    let mut json = serde_json::to_value(file).unwrap();
    if let Some((index, count)) = shard {
        json["info"]["shard"] = serde_json::json!({"index": index, "count": count});
    }
    json
}

#[test]
fn merge_labels_refuses_broken_shares_and_annotations_without_crashing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.json");
    let merge = |files: &[serde_json::Value]| {
        let mut args: Vec<OsString> = vec!["merge-labels".into(), "--output".into(), out.clone().into()];
        for (i, file) in files.iter().enumerate() {
            let path = tmp.path().join(format!("in{i}.json"));
            std::fs::write(&path, serde_json::to_vec(file).unwrap()).unwrap();
            args.push(path.into());
        }
        run(&args)
    };
    let spoiled = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut file = coco_json("b.png", None);
        edit(&mut file);
        vec![coco_json("a.png", None), file]
    };
    let cases: Vec<(Vec<serde_json::Value>, &[&str])> = vec![
        (vec![coco_json("a.png", Some((3, 3)))], &["in0.json", "share 3/3 is not a share"]),
        (vec![coco_json("a.png", Some((0, 0)))], &["in0.json", "share 0/0", "1 to 100000 shares"]),
        (vec![coco_json("a.png", Some((0, 4294967295)))], &["in0.json", "1 to 100000 shares"]),
        (vec![coco_json("a.png", Some((0, 50000000)))], &["in0.json", "1 to 100000 shares"]),
        (vec![coco_json("a.png", Some((0, 10)))], &["share(s) 1/10, 2/10, 3/10, 4/10 and 5 more missing"]),
        (
            spoiled(&|f| f["annotations"][0]["category_id"] = 9.into()),
            &["in1.json: annotation 1", "category 9"],
        ),
        (spoiled(&|f| f["annotations"][1]["bbox"][3] = (-1.0).into()), &["in1.json: annotation 2", "box"]),
        (
            spoiled(&|f| f["annotations"][1]["segmentation"]["counts"] = "22".into()),
            &["in1.json: annotation 2", "runs cover 4 pixels, not the 3"],
        ),
        (
            spoiled(&|f| f["annotations"][0]["segmentation"]["counts"] = "0~".into()),
            &["in1.json: annotation 1", "not a character of COCO's RLE"],
        ),
        (
            spoiled(&|f| f["images"][0]["file_name"] = "../b.png".into()),
            &["in1.json: image 1", "`../b.png`", ".."],
        ),
        (spoiled(&|f| f["images"][0]["file_name"] = "/tmp/b.png".into()), &["in1.json: image 1", "absolute"]),
    ];
    for (files, needles) in cases {
        let result = merge(&files);
        assert_ne!(result.status.code(), Some(101), "a panic: {}", stderr(&result));
        refused(&result, needles);
        assert!(stderr(&result).len() < 600, "a short message: {}", stderr(&result));
        assert!(!out.exists(), "nothing is written");
    }
    ok(&merge(&[coco_json("a.png", None), coco_json("b.png", None)]));
}

#[test]
fn a_missing_list_or_a_missing_listed_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    refused(
        &segment(&[&"--targets-from", &tmp.path().join("nope.txt"), &"--out-dir", &out]),
        &["cannot read the target list", "nope.txt"],
    );
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, format!("{}\nmissing.png\n", fixture("target_a.png").display())).unwrap();
    refused(&segment(&[&"--targets-from", &list, &"--out-dir", &out]), &["missing.png (line 2 of"]);
    std::fs::write(&list, b"\xff\xfe\n").unwrap();
    refused(&segment(&[&"--targets-from", &list, &"--out-dir", &out]), &["not UTF-8"]);
    assert!(!out.exists());
}

#[test]
fn a_broken_image_inside_a_folder_is_refused_by_name_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    std::fs::write(data.join("b/broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let out = tmp.path().join("out");
    let result = segment(&[&"--targets", &data, &"--out-dir", &out]);
    refused(&result, &["broken.png"]);
    assert!(!stderr(&result).contains("loading"));
    assert!(!out.exists());
    // A folder with no image at all, and a folder that does not exist.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(&segment(&[&"--targets", &empty, &"--out-dir", &out]), &["holds no PNG or JPEG"]);
    refused(
        &segment(&[&"--targets", &tmp.path().join("nowhere"), &"--out-dir", &out]),
        &["cannot read the folder"],
    );
}

#[test]
fn bad_class_name_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let names = tmp.path().join("names.txt");
    let cases: [(&[u8], &str); 4] = [
        (b"one\n", "1 name(s) for 2 class(es)"),
        (b"one\n\ntwo\n", "line 2 is empty"),
        (b"cat\ncat\n", "lines 1 and 2 both name `cat`"),
        (b"\xff\n", "not UTF-8"),
    ];
    for (text, needle) in cases {
        std::fs::write(&names, text).unwrap();
        refused(
            &segment(&[&"--targets", &data, &"--out-dir", &out, &"--export", &"coco", &"--classes", &names]),
            &[needle],
        );
    }
    refused(
        &segment(&[
            &"--targets",
            &data,
            &"--out-dir",
            &out,
            &"--export",
            &"coco",
            &"--classes",
            &tmp.path().join("no"),
        ]),
        &["cannot read the class names file"],
    );
    assert!(!out.exists());
}

#[test]
fn export_options_without_their_export_and_other_misuse_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    refused(
        &segment(&[&"--targets", &data, &"--out-dir", &out, &"--polygons"]),
        &["--polygons", "--export coco"],
    );
    refused(&segment(&[&"--targets", &data, &"--out-dir", &out, &"--classes", &"x.txt"]), &["--classes"]);
    refused(&segment(&[&"--targets", &data, &"--out-dir", &out, &"--min-area", &"5"]), &["--min-area"]);
    let zero = segment(&[&"--targets", &data, &"--out-dir", &out, &"--export", &"coco", &"--min-area", &"0"]);
    refused(&zero, &["--min-area", "at least 1"]);
    refused(&segment(&[&"--out-dir", &out]), &["no targets"]);
    // The output folder inside the targets' folder would feed the outputs back in.
    refused(
        &segment(&[&"--targets", &data, &"--out-dir", &data.join("labels")]),
        &["inside the targets folder"],
    );
    assert!(!out.exists() && !data.join("labels").exists());
}

#[test]
fn two_targets_with_one_yolo_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(fixture("target_a.png"), data.join("x.png")).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9])).save(data.join("x.jpg")).unwrap();
    let out = tmp.path().join("out");
    refused(
        &segment(&[&"--targets", &data, &"--out-dir", &out, &"--export", &"yolo"]),
        &["two targets would write", "x.txt"],
    );
    assert!(!out.exists());
}

#[cfg(unix)]
#[test]
fn a_name_that_is_not_utf8_is_refused_for_coco() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(fixture("target_a.png"), data.join(std::ffi::OsStr::from_bytes(b"t\xff.png"))).unwrap();
    let out = tmp.path().join("out");
    refused(&segment(&[&"--targets", &data, &"--out-dir", &out, &"--export", &"coco"]), &["not", "UTF-8"]);
    assert!(!out.exists());
}

#[test]
fn merge_labels_refuses_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.json");
    let merge = |inputs: &[&Path]| {
        let mut args: Vec<OsString> = vec!["merge-labels".into(), "--output".into(), out.clone().into()];
        args.extend(inputs.iter().map(|p| p.as_os_str().to_os_string()));
        run(&args)
    };
    refused(&merge(&[&tmp.path().join("none.json")]), &["cannot read the COCO file", "none.json"]);
    let text = tmp.path().join("text.json");
    std::fs::write(&text, "{ not json").unwrap();
    refused(&merge(&[&text]), &["text.json is not a COCO file"]);
    // Two runs over the same image overlap; runs with other categories do not merge.
    let data = dataset(tmp.path());
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    ok(&segment(&[&"--targets", &data, &"--out-dir", &one, &"--export", &"coco"]));
    ok(&segment(&[&"--targets", &data, &"--out-dir", &two, &"--export", &"coco", &"--num-labels", &"3"]));
    refused(&merge(&[&one.join("coco.json"), &one.join("coco.json")]), &["is in", "overlap"]);
    refused(&merge(&[&one.join("coco.json"), &two.join("a/x.png.coco.json")]), &["other categories"]);
    refused(&merge(&[&one.join("coco.json"), &tmp.path().join("gone.json")]), &["cannot read", "gone.json"]);
    let same = run(&[
        "merge-labels".as_ref(),
        "--output".as_ref(),
        one.join("coco.json").as_os_str(),
        one.join("coco.json").as_os_str(),
    ]);
    refused(&same, &["would destroy what this run reads"]);
    assert!(!out.exists());
}
