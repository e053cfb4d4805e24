//! The navigation environment: one episode walks the expert rail of a route, one model call per
//! attempt (paper-spec §2.9).
//!
//! * A correct action moves to the next rail position, or ends the episode at `stop()`. After a
//!   move the conversation restarts as a fresh prompt (new history, new image).
//! * A wrong action stays in place; the response and the feedback turn
//!   `You failed this trial because {message}` are appended.
//! * Each position allows `verify_iter` graded attempts. The next call there is not read: it gets
//!   −1 and "Exceed maximum verify steps", and the episode ends as a failure.

use std::sync::Arc;

use super::config::{NavConfig, PromptLayout, SuccessRule};
use super::data::NavData;
use super::error::NavError;
use super::instruction::{Instruction, build_instruction};
use super::panorama::GridRenderer;
use super::prompt::{
    action_space_with, compact_prompt, feedback_turn, obs_act_sequence, task_prompt, turn_words,
};
use super::rail::{RailPoint, STOP, build_rail};
use super::route::Route;
use super::verify::{CORRECT_ACTION, INCORRECT_ACTION, step_rewards_virl};
use crate::{Env, EnvError, Rng, Transcript, Verdict};

/// The verifier message of a call past the attempt limit.
pub const EXCEED_MESSAGE: &str = "Exceed maximum verify steps";

/// The state of one episode.
#[derive(Clone, Debug)]
struct Episode {
    route: usize,
    init_heading: f64,
    instruction: Instruction,
    rail: Vec<RailPoint>,
    /// Index of the current rail position.
    step: usize,
    /// Graded attempts left here, minus one (the reference's `remaining_step`).
    remaining: i64,
    /// Executed actions and the oracle observations of the positions visited.
    actions: Vec<String>,
    observations: Vec<String>,
    /// The reference's `is_success`: no position ran out of attempts.
    is_success: bool,
    /// Every attempt so far was correct.
    no_failures: bool,
    /// `(terminated, truncated)` once the episode is over.
    ended: Option<(bool, bool)>,
}

/// V-IRL navigation as a verifiable environment (V-IRL-L, or V-IRL-VL with `config.vision`).
pub struct Navigation {
    data: Arc<NavData>,
    config: NavConfig,
    renderer: Option<GridRenderer>,
    episode: Option<Episode>,
    transcript: Transcript,
}

impl Navigation {
    /// An environment over loaded route data. `data` must have been loaded with a config that
    /// needs at least what this one does: relocation needs the panorama mapping, and vision the
    /// checked panoramas.
    pub fn new(data: Arc<NavData>, config: NavConfig) -> Result<Self, NavError> {
        config.validate().map_err(NavError::Invalid)?;
        if let Some([_, end]) = config.route_range
            && end > data.routes.len()
        {
            return Err(NavError::Invalid(format!(
                "route_range ends at {end}, but {} holds {} routes",
                data.dir.display(),
                data.routes.len()
            )));
        }
        if (config.relocation || config.vision) && data.panos.is_none()
            || config.vision && !data.views_checked
        {
            return Err(NavError::Invalid(format!(
                "{}: relocation needs the panorama mapping and vision the checked panoramas; load the data with such a config",
                data.dir.display()
            )));
        }
        let renderer = config.vision.then(|| {
            GridRenderer::new(
                data.street_views(),
                config.crop_size,
                config.resolution,
                config.fov_deg,
            )
        });
        Ok(Navigation {
            data,
            config,
            renderer,
            episode: None,
            transcript: Transcript::default(),
        })
    }

    /// Loads the route folder `dir` and opens an environment on it.
    pub fn open(dir: &std::path::Path, config: NavConfig) -> Result<Self, NavError> {
        let data = Arc::new(NavData::load(dir, &config)?);
        Navigation::new(data, config)
    }

    pub fn config(&self) -> &NavConfig {
        &self.config
    }

    pub fn data(&self) -> &Arc<NavData> {
        &self.data
    }

    /// Starts an episode on a route drawn by `seed` (from `route_range` when set).
    pub fn try_reset(&mut self, seed: u64) -> Result<&Transcript, NavError> {
        let mut rng = Rng::new(seed);
        let [start, end] = self
            .config
            .route_range
            .unwrap_or([0, self.data.routes.len()]);
        let route = start + rng.below((end - start) as u64) as usize;
        self.start(route, rng)
    }

    /// Starts an episode on route `route` (the reference's ordered evaluation); `seed` draws the
    /// initial heading (when the route has none) and the dropped rail points.
    pub fn try_reset_route(&mut self, route: usize, seed: u64) -> Result<&Transcript, NavError> {
        if route >= self.data.routes.len() {
            return Err(NavError::Invalid(format!(
                "route index {route} is out of range: {} has {} routes",
                self.data.dir.display(),
                self.data.routes.len()
            )));
        }
        self.start(route, Rng::new(seed))
    }

    fn start(&mut self, route_idx: usize, mut rng: Rng) -> Result<&Transcript, NavError> {
        let route = &self.data.routes[route_idx];
        let init_heading = if route.init_heading == 0.0 {
            rng.range_inclusive(0, 359) as f64
        } else {
            route.init_heading
        };
        let instruction = build_instruction(
            &route.milestones,
            init_heading,
            self.config.relative_heading_wrap,
        );
        let relocation = if self.config.relocation {
            self.data.panos.as_ref()
        } else {
            None
        };
        let rail = build_rail(
            route,
            &instruction,
            init_heading,
            relocation,
            &self.config.rail_params(),
            &mut rng,
        )?;
        let mut rail = rail;
        if self.config.turn_words.is_some() {
            let (own, words) = (
                turn_words(self.config.absolute_action),
                self.config.turn_words(),
            );
            for point in &mut rail {
                point.gt_action = rename_turn(&point.gt_action, own, &words);
            }
        }
        let first_obs = rail[0].oracle_observation();
        self.episode = Some(Episode {
            route: route_idx,
            init_heading,
            instruction,
            rail,
            step: 0,
            remaining: self.config.verify_iter as i64,
            actions: Vec::new(),
            observations: vec![first_obs],
            is_success: true,
            no_failures: true,
            ended: None,
        });
        self.transcript = self.fresh_prompt()?;
        Ok(&self.transcript)
    }

    /// The prompt (and image) for the current position.
    fn fresh_prompt(&mut self) -> Result<Transcript, NavError> {
        let Some(ep) = &self.episode else {
            return Ok(Transcript::default());
        };
        let c = &self.config;
        let seq = obs_act_sequence(&ep.actions, &ep.observations, c.vision);
        let words = c.turn_words();
        let prompt = match c.prompt_layout {
            PromptLayout::Reference => task_prompt(
                c.vision,
                c.prompt_text,
                c.json_only,
                &ep.instruction.text,
                &action_space_with(c.absolute_action, &words),
                &seq,
            ),
            PromptLayout::Compact => {
                compact_prompt(&ep.instruction.text, &words, c.json_only, &seq)
            }
        };
        let point = &ep.rail[ep.step];
        let image = match &mut self.renderer {
            Some(r) => {
                let route = &self.data.routes[ep.route];
                let pano_id = pano_for_point(&self.data, route, point, ep.step)?;
                Some(Arc::new(r.render(
                    &pano_id,
                    point.heading,
                    c.virl_view_headings,
                )?))
            }
            None => None,
        };
        Ok(Transcript::new(prompt, image))
    }

    /// Grades one response and advances the episode (see the module docs).
    pub fn try_step(&mut self, response: &str) -> Result<Verdict, NavError> {
        let Some(ep) = self.episode.as_mut().filter(|ep| ep.ended.is_none()) else {
            return Ok(Verdict {
                reward: 0.0,
                message: "the episode is over; reset to start another".into(),
                terminated: true,
                truncated: false,
            });
        };
        ep.remaining -= 1;
        let at_stop = ep.rail[ep.step].gt_action == STOP;
        if ep.remaining == -1 {
            ep.is_success = false;
            ep.ended = Some((at_stop, true));
            return Ok(Verdict {
                reward: INCORRECT_ACTION,
                message: EXCEED_MESSAGE.into(),
                terminated: at_stop,
                truncated: true,
            });
        }
        let point = &ep.rail[ep.step];
        let c = &self.config;
        let grade = step_rewards_virl(
            response,
            &point.gt_action,
            &point.observation,
            c.virl_obs_penalty,
            c.prompt_text,
        );
        let mut terminated = false;
        if grade.reward == CORRECT_ACTION {
            if at_stop {
                terminated = true;
                ep.ended = Some((true, false));
            } else {
                ep.actions.push(point.gt_action.clone());
                ep.step += 1;
                ep.remaining = c.verify_iter as i64;
                let obs = ep.rail[ep.step].oracle_observation();
                ep.observations.push(obs);
                self.transcript = self.fresh_prompt()?;
            }
        } else {
            ep.no_failures = false;
            self.transcript
                .push_revision(response, feedback_turn(&grade.message));
        }
        Ok(Verdict {
            reward: grade.reward,
            message: grade.message,
            terminated,
            truncated: false,
        })
    }

    /// Whether the episode ended at `stop()` under the configured success rule.
    pub fn succeeded(&self) -> bool {
        self.episode.as_ref().is_some_and(|ep| {
            ep.ended == Some((true, false))
                && ep.is_success
                && (self.config.virl_success == SuccessRule::Reference || ep.no_failures)
        })
    }

    /// The current route, if an episode has started.
    pub fn route(&self) -> Option<&Route> {
        self.episode.as_ref().map(|ep| &self.data.routes[ep.route])
    }

    /// The initial heading of the current episode.
    pub fn init_heading(&self) -> Option<f64> {
        self.episode.as_ref().map(|ep| ep.init_heading)
    }

    /// The current episode's instruction.
    pub fn instruction(&self) -> Option<&Instruction> {
        self.episode.as_ref().map(|ep| &ep.instruction)
    }

    /// The current episode's rail.
    pub fn rail(&self) -> &[RailPoint] {
        self.episode.as_ref().map_or(&[], |ep| &ep.rail)
    }

    /// The current rail position's index and point.
    pub fn position(&self) -> Option<(usize, &RailPoint)> {
        self.episode.as_ref().map(|ep| (ep.step, &ep.rail[ep.step]))
    }
}

/// `turn_direction(x)` with the rule's own word `x` replaced by the word at its place in
/// `words`; other actions unchanged.
fn rename_turn(action: &str, own: &[&str], words: &[&str]) -> String {
    let word = action
        .strip_prefix("turn_direction(")
        .and_then(|w| w.strip_suffix(')'));
    match word.and_then(|w| own.iter().position(|o| *o == w)) {
        Some(i) => format!("turn_direction({})", words[i]),
        None => action.to_string(),
    }
}

/// The panorama of a rail point: its snapped panorama, or (without relocation) the one its
/// geocode snaps to now, as the reference's street-view lookup does.
pub fn pano_for_point(
    data: &NavData,
    route: &Route,
    point: &RailPoint,
    step: usize,
) -> Result<String, NavError> {
    match (&point.pano_id, &data.panos) {
        (Some(id), _) => Ok(id.clone()),
        (None, Some(map)) => Ok(map
            .relocate_or_err(point.geocode, &route.label(), &format!("rail point {step}"))?
            .pano_id
            .to_string()),
        (None, None) => Err(NavError::Invalid(
            "rendering needs the panorama mapping".into(),
        )),
    }
}

/// The trait's `reset` and `step` cannot return errors. Loading checked every panorama an episode
/// can reach, so they fail only if a checked panorama can no longer be decoded; then they panic
/// with the file named. Use [`Navigation::try_reset`] and [`Navigation::try_step`] to handle that.
impl Env for Navigation {
    fn reset(&mut self, seed: u64) -> &Transcript {
        if let Err(e) = self.try_reset(seed) {
            panic!("navigation reset failed: {e}");
        }
        &self.transcript
    }

    fn step(&mut self, response: &str) -> Verdict {
        self.try_step(response)
            .unwrap_or_else(|e| panic!("navigation step failed: {e}"))
    }

    fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    fn success(&self) -> bool {
        self.succeeded()
    }

    fn checked_reset(&mut self, seed: u64) -> Result<&Transcript, EnvError> {
        self.try_reset(seed).map_err(|e| EnvError(e.to_string()))
    }

    fn checked_step(&mut self, response: &str) -> Result<Verdict, EnvError> {
        self.try_step(response).map_err(|e| EnvError(e.to_string()))
    }
}
