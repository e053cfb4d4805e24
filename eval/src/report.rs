//! Evaluation results on disk: `eval.json` (every number) and `eval.md` (a readable table and a
//! few transcripts).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use sftvsrl_training::{TrainError, durable};

use crate::error::EvalError;
use crate::evaluate::{CallRate, EvalReport};

/// The results as a Markdown table: one row per variant and verification setting, with a column
/// for per-step accuracy (navigation) and for card recognition (GP-VL) when any row has one.
pub fn table(report: &EvalReport) -> String {
    let rows = &report.results;
    let steps = rows.iter().any(|r| r.step_accuracy.is_some());
    let recognition = rows.iter().any(|r| r.recognition.is_some());
    let mut out = String::from(
        "| variant | verify iter | episodes | success | ± | first attempt | mean reward |",
    );
    let mut rule = String::from("|---|---|---|---|---|---|---|");
    for (shown, name) in [(steps, "per-step accuracy"), (recognition, "recognition")] {
        if shown {
            let _ = write!(out, " {name} |");
            rule.push_str("---|");
        }
    }
    let _ = writeln!(out, "\n{rule}");
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {:.1}% | {:.1} | {} | {:.2} |",
            r.variant.name(),
            r.verify_iter,
            r.episodes,
            100.0 * r.success_rate,
            100.0 * r.std_error,
            r.first_attempt,
            r.mean_reward
        );
        for (shown, rate) in [(steps, r.step_accuracy), (recognition, r.recognition)] {
            if shown {
                let _ = write!(out, " {} |", call_rate(rate));
            }
        }
        out.push('\n');
    }
    out
}

/// `p% ± e (k/n)`, or a dash for a metric the variant does not have.
fn call_rate(rate: Option<CallRate>) -> String {
    match rate {
        Some(s) => format!(
            "{:.1}% ± {:.1} ({}/{})",
            100.0 * s.rate,
            100.0 * s.std_error,
            s.count,
            s.calls
        ),
        None => "—".into(),
    }
}

/// Writes `eval.json` and `eval.md` into `dir`, with `about` (e.g. the checkpoint and config)
/// stored beside the results.
pub fn write_report(
    report: &EvalReport,
    about: serde_json::Value,
    dir: &Path,
) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let json_path = dir.join("eval.json");
    let text = serde_json::to_string_pretty(&json!({
        "about": about, "results": report.results, "transcripts": report.transcripts,
    }))
    .map_err(|e| EvalError::Invalid(format!("serialising the results: {e}")))?;

    let mut md = format!("# Evaluation\n\n{}\n## Transcripts\n", table(report));
    for (variant, record) in &report.transcripts {
        let outcome = if record.success {
            "solved"
        } else {
            "not solved"
        };
        let _ = writeln!(
            md,
            "\n### {} — seed {} ({outcome})\n",
            variant.name(),
            record.seed
        );
        for call in &record.calls {
            if let Some(last) = call.prompt.last() {
                let _ = writeln!(md, "**prompt (last turn)**\n```\n{}\n```", last.text.trim());
            }
            let _ = writeln!(
                md,
                "**response** (reward {}: {})\n```\n{}\n```",
                call.verdict.reward,
                call.verdict.message,
                call.response.trim()
            );
        }
    }
    // `eval.json` last: a resumed study takes its presence for a finished evaluation.
    durable::write_file(&dir.join("eval.md"), md)?;
    durable::write_file(&json_path, text)?;
    Ok(())
}
