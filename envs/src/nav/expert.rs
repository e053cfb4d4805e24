//! Expert SFT data for V-IRL-L and V-IRL-VL: at every rail position of an episode, the prompt
//! the environment shows there and the oracle's answer in the configured layout (`ResponseVIRL`,
//! or `{"action": …}` with the compact layout). Each answer is played back through the
//! environment, so every example is one the verifier accepts.

use std::path::Path;

use serde_json::json;

use super::config::NavConfig;
use super::episode::Navigation;
use super::error::NavError;
use super::prompt::expert_response_in;
use super::style::{NavStyle, paraphrase, with_route_thought};
use super::verify::CORRECT_ACTION;
use crate::expert::ExpertExample;
use crate::{Env, Rng};

/// A stream of expert examples (see [`expert_examples`]).
pub struct ExpertIter {
    env: Navigation,
    seed: u64,
    left: usize,
    episode: u64,
    episode_seed: u64,
    active: bool,
    style: NavStyle,
    /// Draws each example's prompt wording (apart from the episodes' own stream).
    wordings: Rng,
}

/// `n` expert examples from the routes in `routes_dir`, episode `i` seeded from
/// `Rng::derive(seed, i)`. With `vision` each example carries the 2405×2405 grid image (the stream
/// renders them one at a time, so memory stays flat). `config` supplies every other setting
/// (action rule, prompt text, drop rate …); its `vision` field is replaced by `vision`.
pub fn expert_examples(
    routes_dir: &Path,
    vision: bool,
    n: usize,
    seed: u64,
    config: &NavConfig,
) -> Result<ExpertIter, NavError> {
    let config = NavConfig {
        vision,
        ..config.clone()
    };
    let env = Navigation::open(routes_dir, config)?;
    Ok(ExpertIter {
        env,
        seed,
        left: n,
        episode: 0,
        episode_seed: 0,
        active: false,
        style: NavStyle::default(),
        wordings: Rng::derive(seed, WORDING_STREAM),
    })
}

/// The random stream of the examples' prompt wordings.
const WORDING_STREAM: u64 = 0x0077_6f72_6469_6e67;

impl ExpertIter {
    /// The stream with its answers and prompts presented in `style` (the default style leaves
    /// every example as it was).
    pub fn styled(self, style: NavStyle) -> Self {
        ExpertIter { style, ..self }
    }

    fn next_example(&mut self) -> Result<ExpertExample, NavError> {
        if !self.active {
            self.episode_seed = Rng::derive(self.seed, self.episode).next_u64();
            self.episode += 1;
            self.env.try_reset(self.episode_seed)?;
            self.active = true;
        }
        let transcript = self.env.transcript();
        let mut prompt = transcript.turns[0].text.clone();
        let image = transcript.image.as_ref().map(|img| img.as_ref().clone());
        let (step, point) = self
            .env
            .position()
            .ok_or_else(|| NavError::Invalid("no episode".into()))?;
        let mut response = expert_response_in(
            self.env.config().prompt_layout,
            &point.oracle_observation(),
            &point.instruction,
            &point.gt_action,
        );
        let mut meta = json!({
            "env": if self.env.config().vision { "virl-vl" } else { "virl-l" },
            "route": self.env.route().map(|r| r.index),
            "episode_seed": self.episode_seed,
            "step": step,
            "gt_action": point.gt_action,
        });
        if self.env.config().vision {
            meta["resolution"] = json!(self.env.config().resolution);
        }
        if self.style.prompt_variants > 1 {
            let variant = self.wordings.below(u64::from(self.style.prompt_variants)) as u32;
            prompt = paraphrase(&prompt, self.env.config().prompt_layout, variant);
            meta["prompt_variant"] = json!(variant);
        }
        if self.style.chain_of_thought {
            response = with_route_thought(&response, point);
        }
        let verdict = self.env.try_step(&response)?;
        if verdict.reward != CORRECT_ACTION {
            return Err(NavError::Invalid(format!(
                "the expert answer at rail point {step} was graded {}: {}",
                verdict.reward, verdict.message
            )));
        }
        self.active = !verdict.done();
        Ok(ExpertExample {
            prompt,
            history: Vec::new(),
            response,
            image,
            meta,
        })
    }
}

impl Iterator for ExpertIter {
    type Item = Result<ExpertExample, NavError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = self.next_example();
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }
}
