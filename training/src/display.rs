//! What a training run shows while it works. On a terminal: burn-train's dashboard (metric
//! plots, progress bar, ETA; its stop key ends the run after a checkpoint). Anywhere else (CI,
//! pipes, tests): plain log lines. Any `FnMut(&str)` closure is a plain display.

use std::collections::HashMap;

use burn::data::dataloader::Progress;
use burn_train::Interrupter;
use burn_train::metric::{
    MetricAttributes, MetricDefinition, MetricEntry, MetricId, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use burn_train::renderer::tui::TuiMetricsRendererWrapper;
use burn_train::renderer::{
    MetricState, MetricsRenderer, MetricsRendererTraining, TrainingProgress,
};

/// Where a run reports progress.
pub trait RunDisplay {
    /// A line of text: the start, a resume, results.
    fn line(&mut self, text: &str);

    /// Metrics after optimizer step `step` of `total` (`valid`: of a validation pass).
    fn metrics(&mut self, valid: bool, step: usize, total: usize, values: &[(&str, f64)]) {
        let split = if valid { "valid" } else { "train" };
        let values: Vec<String> = values.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        self.line(&format!(
            "{split} step {step}/{total}: {}",
            values.join(", ")
        ));
    }

    /// Work done so far: `done` of `total` units (RL updates, episodes); for progress bars.
    fn progress(&mut self, _done: usize, _total: usize) {}

    /// Whether the user asked the run to stop (it then checkpoints and returns).
    fn stop_requested(&self) -> bool {
        false
    }
}

impl<F: FnMut(&str)> RunDisplay for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}

/// burn-train's terminal dashboard. Text lines are kept and printed to stderr when it closes.
pub struct Dashboard {
    renderer: Option<TuiMetricsRendererWrapper>,
    interrupter: Interrupter,
    ids: HashMap<String, MetricId>,
    lines: Vec<String>,
}

impl Dashboard {
    /// Takes over the terminal; `resumed_step` marks where a resumed run started.
    pub fn new(resumed_step: Option<usize>) -> Self {
        let interrupter = Interrupter::new();
        Dashboard {
            renderer: Some(TuiMetricsRendererWrapper::new(
                interrupter.clone(),
                resumed_step,
            )),
            interrupter,
            ids: HashMap::new(),
            lines: Vec::new(),
        }
    }

    fn id(&mut self, name: &str) -> MetricId {
        if let Some(id) = self.ids.get(name) {
            return id.clone();
        }
        let id = MetricId::new(name.to_string().into());
        let definition = MetricDefinition {
            metric_id: id.clone(),
            name: name.to_string(),
            description: None,
            attributes: MetricAttributes::Numeric(NumericAttributes {
                unit: None,
                higher_is_better: !name.contains("loss"),
            }),
        };
        if let Some(r) = &mut self.renderer {
            r.register_metric(definition);
        }
        self.ids.insert(name.to_string(), id.clone());
        id
    }
}

impl RunDisplay for Dashboard {
    fn line(&mut self, text: &str) {
        self.lines.push(text.to_string());
    }

    fn metrics(&mut self, valid: bool, step: usize, total: usize, values: &[(&str, f64)]) {
        for &(name, value) in values {
            let entry = MetricEntry::new(
                self.id(name),
                SerializedEntry::new(format!("{value:.4}"), value.to_string()),
            );
            let state = MetricState::Numeric(entry, NumericEntry::Value(value));
            let progress = TrainingProgress {
                progress: None,
                global_progress: Progress::new(step, total),
                iteration: Some(step),
            };
            if let Some(r) = &mut self.renderer {
                if valid {
                    r.update_valid(state);
                    r.render_valid(progress, Vec::new());
                } else {
                    r.update_train(state);
                    r.render_train(progress, Vec::new());
                }
            }
        }
    }

    fn stop_requested(&self) -> bool {
        self.interrupter.should_stop()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        // Closing the dashboard gives the terminal back before the kept lines are printed.
        drop(self.renderer.take());
        for line in &self.lines {
            eprintln!("{line}");
        }
    }
}
