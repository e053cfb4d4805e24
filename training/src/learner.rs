//! The pieces burn-train's `Learner` trains with: the model with its [`TrainStep`] and
//! [`InferenceStep`] ([`SftModel`]), the optimizer as the Learner holds it ([`SharedOptim`]),
//! the learning-rate schedule as an [`LrScheduler`] ([`StepLr`]), the data as a [`DataLoader`]
//! of micro-batch plans in the run's exact order ([`PlanLoader`]), and the micro-batch
//! gradients of one optimizer step computed on one or several devices ([`step_grads`]).

use std::sync::{Arc, Mutex, MutexGuard};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::module::Module;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::{GradientsAccumulator, GradientsParams, MultiGradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_train::metric::MetricDefinition;
use burn_train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn_train::train::MultiDevicesTrainStep;
use burn_train::{InferenceStep, ItemLazy, LearningComponentsMarker, TrainOutput, TrainStep};
use sftvsrl_model::{Backbone, FusedAdamW, ImageProcessor, VlmConfig};

use crate::batch::{SftBatch, batch_rows};
use crate::collective::Workers;
use crate::data::Sequence;
use crate::error::TrainError;
use crate::schedule::SftLr;
use crate::step::{SftLoss, StepStats, masked_loss_with};

/// The trained model as burn-train's `Learner` holds it: a [`Backbone`] with the SFT loss as
/// its train and validation step.
#[derive(Module, Debug)]
pub struct SftModel<B: Backend> {
    pub backbone: Backbone<B>,
}

/// The examples a run's micro-batches are drawn from, and how batches are built.
#[derive(Debug)]
pub struct SftData {
    pub sequences: Vec<Sequence>,
    pub vision: Option<(VlmConfig, ImageProcessor)>,
    pub micro_batch: usize,
    pub pad_to_multiple_of: usize,
    /// The training loss (`train.loss`); validation always reports the NLL.
    pub loss: SftLoss,
}

/// One micro-batch to run: which examples, and the loss normaliser of its optimizer step. It
/// holds no tensors: the device that runs it builds them ([`SftMicro::batch`]).
#[derive(Clone, Debug)]
pub struct SftMicro {
    pub data: Arc<SftData>,
    pub rows: Vec<usize>,
    /// Target tokens of the whole optimizer step (none: the batch's own, for validation).
    pub normalizer: Option<usize>,
    /// The optimizer step (from 0) and the micro-batch's place in it.
    pub step: usize,
    pub index: usize,
    /// Whether this is the step's last micro-batch.
    pub last: bool,
}

impl SftMicro {
    /// The micro-batch's tensors on `device`.
    pub fn batch<B: Backend>(&self, device: &B::Device) -> Result<SftBatch<B>, TrainError> {
        let d = &self.data;
        let picked: Vec<&Sequence> = self.rows.iter().map(|&i| &d.sequences[i]).collect();
        let rows = batch_rows(picked.len(), d.micro_batch, d.pad_to_multiple_of);
        let vision = d.vision.as_ref().map(|(c, p)| (c, p));
        SftBatch::with_rows(&picked, rows, d.pad_to_multiple_of, vision, device)
    }

    fn run<B: Backend>(
        &self,
        model: &Backbone<B>,
    ) -> Result<(SftBatch<B>, crate::step::StepOutput<B>), TrainError> {
        let device = model
            .devices()
            .into_iter()
            .next()
            .expect("a model has a device");
        let batch = self.batch::<B>(&device)?;
        let out = match self.normalizer {
            Some(normalizer) => masked_loss_with(model, &batch, normalizer, self.data.loss)?,
            None => masked_loss_with(model, &batch, batch.target_tokens, SftLoss::Nll)?,
        };
        Ok((batch, out))
    }
}

/// What one micro-batch gave: its statistics (real rows only) and input tokens, or why it
/// failed (a non-finite loss, a batch that could not be built).
#[derive(Debug)]
pub struct SftOutput {
    pub index: usize,
    pub result: Result<(StepStats, usize), TrainError>,
}

impl ItemLazy for SftOutput {
    type ItemSync = SftOutput;

    fn sync(self) -> Self::ItemSync {
        self
    }
}

impl<B: AutodiffBackend> TrainStep for SftModel<B> {
    type Input = SftMicro;
    type Output = SftOutput;

    /// The forward and backward pass of one micro-batch; a non-finite loss gives no gradients.
    fn step(&self, item: SftMicro) -> TrainOutput<SftOutput> {
        let failed = |result| TrainOutput {
            grads: GradientsParams::new(),
            item: SftOutput {
                index: item.index,
                result,
            },
        };
        match item.run(&self.backbone) {
            Ok((_, out)) if !out.stats.nll_sum.is_finite() => failed(Err(TrainError::NonFinite {
                step: item.step + 1,
                loss: out.stats.nll_sum as f32,
            })),
            Ok((batch, out)) => {
                let stats = batch.real_stats(out.stats);
                let output = SftOutput {
                    index: item.index,
                    result: Ok((stats, batch.input_tokens)),
                };
                TrainOutput::new(self, out.loss.backward(), output)
            }
            Err(e) => failed(Err(e)),
        }
    }
}

impl<B: Backend> InferenceStep for SftModel<B> {
    type Input = SftMicro;
    type Output = SftOutput;

    fn step(&self, item: SftMicro) -> SftOutput {
        SftOutput {
            index: item.index,
            result: item
                .run(&self.backbone)
                .map(|(batch, out)| (batch.real_stats(out.stats), batch.input_tokens)),
        }
    }
}

/// Loss, token accuracy and teacher-forced exact match of `model` over `micros` (validation
/// micro-batches: each normalised by its own target tokens).
pub fn valid_stats<B: Backend>(
    model: &SftModel<B>,
    micros: impl IntoIterator<Item = SftMicro>,
) -> Result<StepStats, TrainError> {
    let mut stats = StepStats::default();
    for micro in micros {
        stats.add(&InferenceStep::step(model, micro).result?.0);
    }
    Ok(stats)
}

/// The optimizer of a [`Backbone`] as the Learner's optimizer of an [`SftModel`]. The Learner
/// keeps its optimizer to itself; this handle shares the state, so that the run's checkpoints
/// ([`crate::checkpoint`]) save it exactly as before.
pub struct SharedOptim<O>(Arc<Mutex<O>>);

impl<O> Clone for SharedOptim<O> {
    fn clone(&self) -> Self {
        SharedOptim(self.0.clone())
    }
}

impl<O> SharedOptim<O> {
    pub fn new(optim: O) -> Self {
        SharedOptim(Arc::new(Mutex::new(optim)))
    }

    /// The optimizer as it stands.
    pub fn lock(&self) -> MutexGuard<'_, O> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<B, O> Optimizer<SftModel<B>, B> for SharedOptim<O>
where
    B: AutodiffBackend,
    O: Optimizer<Backbone<B>, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: f64, module: SftModel<B>, grads: GradientsParams) -> SftModel<B> {
        let backbone = self.lock().step(lr, module.backbone, grads);
        SftModel { backbone }
    }

    fn step_multi(
        &mut self,
        lr: f64,
        module: SftModel<B>,
        grads: MultiGradientsParams,
    ) -> SftModel<B> {
        let backbone = self.lock().step_multi(lr, module.backbone, grads);
        SftModel { backbone }
    }

    fn to_record(&self) -> Self::Record {
        self.lock().to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        let optim = self.lock().clone().load_record(record);
        *self.lock() = optim;
        self
    }
}

/// The run's [`SftLr`] as burn-train's scheduler: each Learner step gives the rate of the
/// optimizer step it counts, from `step` on (a resumed run starts where it stopped).
#[derive(Clone, Debug)]
pub struct StepLr {
    pub schedule: SftLr,
    pub step: usize,
}

impl LrScheduler for StepLr {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        let lr = self.schedule.lr(self.step);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}

/// A [`DataLoader`] that yields fixed micro-batch plans in order: the run decides the order
/// (epoch shuffles, the resumed step), burn-train drives the iteration.
#[derive(Clone)]
pub struct PlanLoader(pub Arc<Vec<SftMicro>>);

impl<B: Backend> DataLoader<B, SftMicro> for PlanLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<SftMicro> + 'a> {
        Box::new(PlanIter {
            plan: self.0.clone(),
            next: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.0.len()
    }

    fn to_device(&self, _device: &B::Device) -> Arc<dyn DataLoader<B, SftMicro>> {
        Arc::new(self.clone())
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, SftMicro>> {
        Arc::new(PlanLoader(Arc::new(self.0[start..end].to_vec())))
    }
}

struct PlanIter {
    plan: Arc<Vec<SftMicro>>,
    next: usize,
}

impl Iterator for PlanIter {
    type Item = SftMicro;

    fn next(&mut self) -> Option<SftMicro> {
        let item = self.plan.get(self.next).cloned();
        self.next += 1;
        item
    }
}

impl DataLoaderIterator<SftMicro> for PlanIter {
    fn progress(&self) -> Progress {
        Progress::new(self.next.min(self.plan.len()), self.plan.len())
    }
}

/// The optimizer of an SFT run: the fused AdamW over the backbone's parameters.
pub type BackboneOptim<A> = OptimizerAdaptor<FusedAdamW, Backbone<A>, A>;

/// The Learner's components for an SFT run on backend `A`.
pub type SftComponents<A> =
    LearningComponentsMarker<A, StepLr, SftModel<A>, SharedOptim<BackboneOptim<A>>>;

/// burn-train's multi-device train step with its devices (the first holds the weights).
pub type DeviceWorkers<'a, A> = (
    &'a MultiDevicesTrainStep<SftComponents<A>>,
    &'a [burn::tensor::Device<A>],
);

/// Runs the micro-batches of one optimizer step and sums their gradients in micro-batch
/// order. With several devices, burn-train's [`MultiDevicesTrainStep`] runs them a round at a
/// time, one micro-batch per device, and the gradients are brought to the first device.
/// Returns the summed gradients and the micro-batch statistics, or the first micro-batch's
/// failure.
pub fn step_grads<A: AutodiffBackend>(
    model: &SftModel<A>,
    micros: Vec<SftMicro>,
    workers: Option<DeviceWorkers<'_, A>>,
) -> Result<(GradientsParams, StepStats, usize), TrainError> {
    let mut outputs = Vec::with_capacity(micros.len());
    match workers {
        None => {
            for micro in micros {
                let out = TrainStep::step(model, micro);
                let failed = out.item.result.is_err();
                outputs.push(out);
                if failed {
                    break;
                }
            }
        }
        Some((step, devices)) => {
            let mut micros = micros.into_iter().peekable();
            while micros.peek().is_some() {
                // One iterator per worker; in an uneven last round some are empty.
                let mut round: Vec<Box<dyn DataLoaderIterator<SftMicro>>> = devices
                    .iter()
                    .map(|_| Box::new(OneMicro(micros.next())) as Box<_>)
                    .collect();
                let (done, _) = step.step(&mut round, model);
                for item in done {
                    let mut out = item.output;
                    out.grads = out.grads.to_device(&devices[0], model);
                    outputs.push(out);
                }
            }
            outputs.sort_by_key(|out| out.item.index);
        }
    }
    let mut accumulator = GradientsAccumulator::<SftModel<A>>::new();
    let mut stats = StepStats::default();
    let mut input_tokens = 0;
    for out in outputs {
        let (s, tokens) = out.item.result?;
        stats.add(&s);
        input_tokens += tokens;
        accumulator.accumulate(model, out.grads);
    }
    Ok((accumulator.grads(), stats, input_tokens))
}

/// The micro-batches of `micros` that worker `rank` of `world_size` runs: every
/// `world_size`-th, from its rank on (all workers hold the same plan).
pub fn worker_share(micros: Vec<SftMicro>, rank: usize, world_size: usize) -> Vec<SftMicro> {
    micros
        .into_iter()
        .filter(|m| m.index % world_size == rank)
        .collect()
}

/// One optimizer step's gradients, statistics and input tokens summed over every worker, each
/// of which ran its [`worker_share`] of the step (`local`, from [`step_grads`]). A micro-batch
/// that failed anywhere stops every worker: the worker it failed on with its own error, the
/// others with a non-finite stop at the same step or an error saying another worker failed.
pub fn sum_over_workers<A: AutodiffBackend>(
    workers: &Workers,
    model: &SftModel<A>,
    local: Result<(GradientsParams, StepStats, usize), TrainError>,
    step: usize,
) -> Result<(GradientsParams, StepStats, usize), TrainError> {
    let (grads, stats, tokens, failure) = match local {
        Ok((grads, stats, tokens)) => (grads, stats, tokens, None),
        Err(e) => (GradientsParams::new(), StepStats::default(), 0, Some(e)),
    };
    let non_finite = matches!(failure, Some(TrainError::NonFinite { .. }));
    let mut values = vec![
        f32::from(u8::from(non_finite)),
        f32::from(u8::from(failure.is_some() && !non_finite)),
        tokens as f32,
    ];
    values.extend(stat_values(&stats));
    let counts = workers.sum(values)?;
    if let Some(e) = failure {
        return Err(e);
    }
    if counts[0] > 0.0 {
        return Err(TrainError::NonFinite {
            step: step + 1,
            loss: f32::NAN,
        });
    }
    if counts[1] > 0.0 {
        return Err(TrainError::Invalid(format!(
            "optimizer step {}: another worker's micro-batch failed (its own output says why)",
            step + 1
        )));
    }
    let (grads, _) = workers.sum_gradients(model, grads, 0)?;
    Ok((grads, stats_of(&counts[3..]), counts[2] as usize))
}

/// [`StepStats`] summed over every worker.
pub fn sum_stats(workers: &Workers, stats: &StepStats) -> Result<StepStats, TrainError> {
    Ok(stats_of(&workers.sum(stat_values(stats).to_vec())?))
}

/// The counts of `stats` as the collective sums them (exact below 2^24).
fn stat_values(stats: &StepStats) -> [f32; 5] {
    [
        stats.nll_sum as f32,
        stats.tokens as f32,
        stats.correct as f32,
        stats.sequences as f32,
        stats.exact as f32,
    ]
}

/// The inverse of [`stat_values`].
fn stats_of(values: &[f32]) -> StepStats {
    StepStats {
        nll_sum: f64::from(values[0]),
        tokens: values[1] as usize,
        correct: values[2] as usize,
        sequences: values[3] as usize,
        exact: values[4] as usize,
    }
}

/// A data-loader iterator of one micro-batch: a device's share of a round.
struct OneMicro(Option<SftMicro>);

impl Iterator for OneMicro {
    type Item = SftMicro;

    fn next(&mut self) -> Option<SftMicro> {
        self.0.take()
    }
}

impl DataLoaderIterator<SftMicro> for OneMicro {
    fn progress(&self) -> Progress {
        Progress::new(usize::from(self.0.is_none()), 1)
    }
}

/// The Learner's renderer when the run shows its progress itself ([`crate::RunDisplay`]):
/// burn-train's dashboard is then driven by [`crate::Dashboard`].
pub struct Silent;

impl MetricsRendererTraining for Silent {
    fn update_train(&mut self, _state: MetricState) {}
    fn update_valid(&mut self, _state: MetricState) {}
    fn render_train(&mut self, _item: TrainingProgress, _progress: Vec<ProgressType>) {}
    fn render_valid(&mut self, _item: TrainingProgress, _progress: Vec<ProgressType>) {}
}

impl MetricsRendererEvaluation for Silent {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn render_test(&mut self, _item: EvaluationProgress, _progress: Vec<ProgressType>) {}
}

impl MetricsRenderer for Silent {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _definition: MetricDefinition) {}
}
