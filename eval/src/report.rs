//! Evaluation results on disk: `eval.json` (every number) and `eval.md` (a readable table and a
//! few transcripts).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use sftvsrl_training::SftError;

use crate::error::EvalError;
use crate::evaluate::EvalReport;

/// The results as a Markdown table: one row per variant and verification setting.
pub fn table(report: &EvalReport) -> String {
    let mut out = String::from(
        "| variant | verify iter | episodes | success | ± | first attempt | mean reward |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in &report.results {
        let _ = writeln!(
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
    }
    out
}

/// Writes `eval.json` and `eval.md` into `dir`, with `about` (e.g. the checkpoint and config)
/// stored beside the results.
pub fn write_report(
    report: &EvalReport,
    about: serde_json::Value,
    dir: &Path,
) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| SftError::io(dir, e))?;
    let json_path = dir.join("eval.json");
    let text = serde_json::to_string_pretty(&json!({
        "about": about, "results": report.results, "transcripts": report.transcripts,
    }))
    .map_err(|e| EvalError::Invalid(format!("serialising the results: {e}")))?;
    std::fs::write(&json_path, text).map_err(|e| SftError::io(&json_path, e))?;

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
    let md_path = dir.join("eval.md");
    std::fs::write(&md_path, md).map_err(|e| SftError::io(&md_path, e).into())
}
