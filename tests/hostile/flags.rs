//! Hostile command-line flags and line input: sizes of 2^32-1 and 0, numbers that are not
//! numbers, missing paths, and JSONL lines of the wrong shape for the verifiers.

use std::path::Path;

use super::{Case, Expect, args, s};

/// A case running `sftvsrl` with the words of `command` (`{dir}` stands for the case's folder); the error must
/// contain `names`.
fn flags(command: &'static str, names: &'static str) -> Case {
    Case::new(command.to_string(), Expect::Fails, move |dir: &Path| {
        let argv: Vec<String> = command
            .split_whitespace()
            .map(|a| a.replace("{dir}", &s(dir)))
            .collect();
        (argv, names.replace("{dir}", &s(dir)))
    })
}

/// A case that writes `line` to `in.jsonl` and runs `sftvsrl cmd… --jsonl in.jsonl`
/// (`gp verify` grades a batch: it reports each bad line, then fails).
fn jsonl(cmd: &'static [&'static str], line: &'static str) -> Case {
    let expect = if cmd == ["gp", "verify"] {
        Expect::FailsWithLineReport
    } else {
        Expect::Fails
    };
    Case::new(
        format!("{} --jsonl <{line}>", cmd.join(" ")),
        expect,
        move |dir: &Path| {
            let path = dir.join("in.jsonl");
            std::fs::write(&path, line).unwrap();
            let mut argv = args(cmd);
            argv.extend(["--jsonl".to_string(), s(&path)]);
            (argv, s(&path))
        },
    )
}

pub fn cases(model: &Path) -> Vec<Case> {
    let mut cases = vec![
        flags(
            "gp render --cards SA,HT,DQ,C7 --out {dir}/x.png --image-size 4294967295",
            "image",
        ),
        flags(
            "gp render --cards SA,HT,DQ,C7 --out {dir}/x.png --image-size 0",
            "image",
        ),
        flags(
            "gp render --cards SA,HT,DQ,C7,C8,C9,C10 --out {dir}/x.png",
            "cards",
        ),
        flags(
            "gp render --cards SA,HT,DQ,C7 --out /nonexistent/dir/x.png",
            "/nonexistent/dir/x.png",
        ),
        flags("gp sample --seed -1", "--seed"),
        flags("gp sample --seed 18446744073709551616", "--seed"),
        flags("gp verify --cards A,3 --response x", "cards"),
        flags("gp verify --cards ZZ,1,2,3 --response x", "ZZ"),
        flags(
            "nav world --city nyc --routes 1 --pano-width 4294967295 --out {dir}/w",
            "pano",
        ),
        flags(
            "nav world --city nyc --routes 1 --pano-width 0 --out {dir}/w",
            "pano",
        ),
        flags(
            "nav world --city nyc --routes 1 --grid-heading NaN --out {dir}/w",
            "heading",
        ),
        flags(
            "nav world --city nyc --routes 1 --grid-heading inf --out {dir}/w",
            "heading",
        ),
        flags("nav world --city atlantis --out {dir}/w", "atlantis"),
        flags("nav sample --routes {dir}/none", "{dir}/none"),
        flags(
            "nav render --routes {dir}/none --out {dir}/x.png --resolution 4294967295",
            "--resolution",
        ),
        flags(
            "nav render --routes {dir}/none --out {dir}/x.png --resolution 0",
            "--resolution",
        ),
        flags(
            "data sft --env gp-vl --n 1 --image-size 4294967295 --out {dir}/d",
            "image",
        ),
        flags("data sft --env nowhere --n 1 --out {dir}/d", "nowhere"),
        flags("eval --checkpoint {dir}/none", "{dir}/none"),
        flags("sft {dir}/none.toml", "{dir}/none.toml"),
        flags("rl {dir}/none.toml", "{dir}/none.toml"),
        flags("study {dir}/none.toml", "{dir}/none.toml"),
        flags("generate --model {dir}/none --prompt x", "{dir}/none"),
        flags("import --model {dir}/none --out {dir}/o", "{dir}/none"),
        flags("bench gp --episodes -5", "--episodes"),
        jsonl(
            &["gp", "verify"],
            "{\"cards\": 5, \"rule\": \"id\", \"vl\": false, \"response\": \"x\"}",
        ),
        jsonl(
            &["gp", "verify"],
            "{\"cards\": [\"A\", \"2\", \"3\", \"4\"], \"rule\": \"nope\", \"vl\": false, \"response\": \"x\"}",
        ),
        jsonl(&["gp", "verify"], "[1, 2]"),
        jsonl(
            &["nav", "verify"],
            "{\"gt_action\": 5, \"gt_obs\": \"x\", \"response\": \"x\"}",
        ),
        jsonl(&["nav", "verify"], "{\"gt_action\""),
        jsonl(&["nav", "instruction"], "{\"milestone_info\": 5}"),
        jsonl(
            &["nav", "instruction"],
            "{\"milestone_info\": \"{\\n\\\"landmarks\\\": \\\"x\\\"\\n}\", \"init_heading\": 90}",
        ),
    ];
    // Generation settings that are not numbers a sampler can use.
    let m = s(model);
    // (the error names the setting: `top_p`, `temperature`, `max_new_tokens`).
    for (flag, value, setting) in [
        ("--top-p", "5", "top_p"),
        ("--top-p", "NaN", "top_p"),
        ("--temperature", "-1", "temperature"),
        ("--temperature", "inf", "temperature"),
        ("--max-new-tokens", "18446744073709551615", "max_new_tokens"),
        ("--max-new-tokens", "100000000", "max_new_tokens"),
    ] {
        let argv = args(&["generate", "--model", &m, "--prompt", "x", flag, value]);
        cases.push(Case::new(
            format!("generate {flag} {value}"),
            Expect::Fails,
            move |_: &Path| (argv.clone(), setting.to_string()),
        ));
    }
    cases
}
