//! The hostile-input suite of issue #17: for every file format the binary reads (GGUF files,
//! safetensors checkpoint folders, vision-language folders, tokenizer files, SFT JSONL, TOML
//! settings, V-IRL route folders and their pickle, street-view images, a run's resume state) and
//! for its flags, generated corruptions run against the real `sftvsrl` binary. Each must end in
//! a one-line error naming the input and a non-zero exit; never a panic, an abort or a hang. Each test prints how many cases it ran.

mod hostile;

use std::path::Path;

use hostile::{Case, assert_pristine_ok, run_binary, run_cases, scratch};

/// Runs `cases` after checking the pristine input works; asserts that all of them ran.
fn suite(format: &str, pristine: Option<(Vec<String>, &Path)>, cases: Vec<Case>) {
    if let Some((args, cwd)) = pristine {
        assert_pristine_ok(&args, cwd);
    }
    let n = cases.len();
    assert!(n > 0, "no {format} cases generated");
    assert_eq!(run_cases(format, cases), n);
}

#[test]
fn hostile_gguf_files() {
    let dir = scratch("gguf-pristine");
    suite(
        "gguf",
        Some((hostile::gguf::pristine(&dir), &dir)),
        hostile::gguf::cases(),
    );
}

#[test]
fn hostile_checkpoint_folders_and_tokenizers() {
    let root = scratch("hf-pristine");
    let word_level = root.join("word-level");
    hostile::fixtures::hf_model(&word_level);
    // The GGUF fixture imported: a checkpoint folder with a byte-level BPE tokenizer.
    let bpe = root.join("bpe");
    let gguf_args = hostile::gguf::pristine(&root);
    let mut import = gguf_args.clone();
    *import.last_mut().unwrap() = hostile::s(&bpe);
    let (code, err, _) = run_binary(&import, &root);
    assert_eq!(code, Some(0), "{err}");
    let check = |dir: &Path| {
        let out = dir.with_extension("out");
        hostile::args(&[
            "import",
            "--model",
            &hostile::s(dir),
            "--out",
            &hostile::s(&out),
        ])
    };
    assert_pristine_ok(&check(&bpe), &root);
    let mut cases = hostile::hf::cases(&word_level);
    cases.extend(hostile::hf::tokenizer_cases(&word_level, "word-level"));
    cases.extend(hostile::hf::tokenizer_cases(&bpe, "BPE"));
    suite(
        "checkpoint folder",
        Some((check(&word_level), &root)),
        cases,
    );
}

#[test]
fn hostile_vision_language_folders() {
    let dir = scratch("vlm-pristine");
    let pristine = hostile::vlm::pristine(&dir);
    suite(
        "vision-language folder",
        Some((pristine, &dir)),
        hostile::vlm::cases(&dir),
    );
}

#[test]
fn hostile_route_folders_and_pickles() {
    let routes = hostile::nav::fixture_routes();
    let dir = scratch("nav-pristine");
    let pristine = hostile::nav::pristine(hostile::nav::Read::Sample, &routes, &dir);
    suite(
        "route folder",
        Some((pristine, &dir)),
        hostile::nav::route_cases(&routes),
    );
}

#[test]
fn hostile_street_views() {
    let dir = scratch("views-pristine");
    let world = dir.join("world");
    let argv = hostile::args(&[
        "nav",
        "world",
        "--city",
        "nyc",
        "--routes",
        "2",
        "--seed",
        "5",
        "--pano-width",
        "256",
        "--out",
        &hostile::s(&world),
    ]);
    assert_pristine_ok(&argv, &dir);
    for read in [hostile::nav::Read::Vision, hostile::nav::Read::Render] {
        assert_pristine_ok(&hostile::nav::pristine(read, &world, &dir), &dir);
    }
    suite("street views", None, hostile::nav::view_cases(&world));
}

#[test]
fn hostile_sft_data() {
    let dir = scratch("jsonl-pristine");
    suite(
        "sft jsonl",
        Some((hostile::jsonl::pristine(&dir), &dir)),
        hostile::jsonl::cases(),
    );
}

#[test]
fn hostile_resume_state() {
    let dir = scratch("resume-pristine");
    let resume = hostile::resume::pristine(&dir);
    suite(
        "resume state",
        Some((resume, &dir)),
        hostile::resume::cases(&dir),
    );
}

#[test]
fn hostile_settings_files() {
    suite("toml settings", None, hostile::toml_cases::cases());
}

#[test]
fn hostile_flags_and_lines() {
    let dir = scratch("flags-pristine");
    let gguf = hostile::gguf::pristine(&dir);
    let model = std::path::PathBuf::from(&gguf[2]);
    suite("flags", None, hostile::flags::cases(&model));
}
