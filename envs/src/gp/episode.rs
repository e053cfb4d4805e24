//! The GeneralPoints environment: dealing solvable hands and the sequential-revision episode loop
//! (paper-spec §1.10).

use std::sync::Arc;

use thiserror::Error;

use super::cards::{Card, draw_cards};
use super::config::GpConfig;
use super::paraphrase::paraphrase;
use super::prompt::PromptSpec;
use super::render::render_hand;
use super::solver::{Solutions, solutions};
use super::verify::{Grade, HandFacts, grade_response, reward};
use crate::env::{Env, Transcript, Verdict};
use crate::rng::Rng;

/// A configuration that cannot produce an episode.
#[derive(Debug, Error, PartialEq)]
pub enum GpError {
    #[error("gp.target = {target}: no hand of four cards can reach it under this rule")]
    UnreachableTarget { target: i64 },
    #[error("gp.face_cards: custom values must be 1..=99, got {0:?}")]
    FaceValues([u8; 3]),
    #[error("gp.image_size must be in 32..=4096 pixels, got {0}")]
    ImageSize(u32),
    #[error("gp.verify_iter must be at least 1")]
    NoAttempts,
}

/// The GP-VL image sides `check_config` accepts.
pub const IMAGE_SIZES: std::ops::RangeInclusive<u32> = 32..=4096;

/// A dealt hand and its solutions.
#[derive(Clone, Debug)]
pub struct Hand {
    pub cards: [Card; 4],
    /// Values under the configured face-card rule, in dealing order.
    pub values: [u8; 4],
    pub solutions: Arc<Solutions>,
}

impl Hand {
    /// The plain card names (A, 2..10, J, Q, K).
    pub fn names(&self) -> [&'static str; 4] {
        self.cards.map(Card::plain_name)
    }
}

/// Deals a solvable hand (rejection sampling, as the reference's `reset`).
pub fn deal(cfg: &GpConfig, rng: &mut Rng) -> Hand {
    loop {
        let cards = draw_cards(rng, cfg.sampling, cfg.suits, cfg.require_face_card);
        let values = cards.map(|c| cfg.face_cards.value(c.rank));
        let solutions = solutions(values, cfg.target);
        if solutions.is_solvable() {
            return Hand {
                cards,
                values,
                solutions,
            };
        }
    }
}

/// The first user prompt of an episode with `hand`.
pub fn hand_prompt(cfg: &GpConfig, hand: &Hand) -> String {
    hand_prompt_variant(cfg, hand, 0)
}

/// Prompt variant `variant` of an episode with `hand` (0: the environment's own prompt; see
/// [`super::paraphrase`]).
pub fn hand_prompt_variant(cfg: &GpConfig, hand: &Hand, variant: u32) -> String {
    paraphrase(
        &PromptSpec {
            target: cfg.target,
            rule: cfg.face_cards,
            cards: &hand.names(),
            vision: cfg.vision,
            example: cfg.prompt_example,
            text: cfg.prompt_text,
            layout: cfg.prompt_layout,
        },
        variant,
    )
}

/// The user turn that follows a failed attempt (the reference's wording).
pub fn revision_feedback(message: &str) -> String {
    format!("You failed this trial because {message}")
}

/// Checks that rejection sampling under `cfg` terminates: some hand it can draw is solvable.
pub fn check_config(cfg: &GpConfig) -> Result<(), GpError> {
    if cfg.verify_iter == 0 {
        return Err(GpError::NoAttempts);
    }
    if !IMAGE_SIZES.contains(&cfg.image_size) {
        return Err(GpError::ImageSize(cfg.image_size));
    }
    let faces = cfg.face_cards.face_values();
    if faces.iter().any(|v| !(1..=99).contains(v)) {
        return Err(GpError::FaceValues(faces));
    }
    let ranks = 1..=13u8;
    let reachable = ranks.clone().any(|a| {
        ranks.clone().filter(|&b| b >= a).any(|b| {
            ranks.clone().filter(|&c| c >= b).any(|c| {
                ranks.clone().filter(|&d| d >= c).any(|d| {
                    let hand = [a, b, c, d];
                    let has_face = hand.iter().any(|&r| r >= 11);
                    let values = hand.map(|r| cfg.face_cards.value(r));
                    (has_face || !cfg.require_face_card)
                        && solutions(values, cfg.target).is_solvable()
                })
            })
        })
    });
    if reachable {
        Ok(())
    } else {
        Err(GpError::UnreachableTarget { target: cfg.target })
    }
}

/// The GeneralPoints environment (`GeneralPointEnv_oneline`).
pub struct GeneralPoints {
    cfg: GpConfig,
    hand: Hand,
    remaining: i64,
    solved: bool,
    transcript: Transcript,
}

impl GeneralPoints {
    /// An environment with a first episode dealt from seed 0.
    pub fn new(cfg: GpConfig) -> Result<Self, GpError> {
        check_config(&cfg)?;
        let hand = deal(&cfg, &mut Rng::new(0));
        let mut env = GeneralPoints {
            cfg,
            hand,
            remaining: 0,
            solved: false,
            transcript: Transcript::default(),
        };
        env.reset(0);
        Ok(env)
    }

    /// The settings.
    pub fn config(&self) -> &GpConfig {
        &self.cfg
    }

    /// The current hand.
    pub fn hand(&self) -> &Hand {
        &self.hand
    }

    /// Graded attempts left in this episode (the reference's `remaining_step`).
    pub fn remaining_attempts(&self) -> i64 {
        self.remaining.max(0)
    }

    /// What the verifier knows about the current hand.
    pub fn facts(&self) -> HandFacts<'_> {
        HandFacts {
            values: self.hand.values,
            names: self.hand.names(),
            solutions: &self.hand.solutions,
            target: self.cfg.target,
            vision: self.cfg.vision,
            scheme: self.cfg.gp_reward,
        }
    }

    /// Grades a response against the current hand without advancing the episode.
    pub fn grade(&self, response: &str) -> Grade {
        grade_response(response, &self.facts())
    }
}

impl Env for GeneralPoints {
    fn reset(&mut self, seed: u64) -> &Transcript {
        self.hand = deal(&self.cfg, &mut Rng::new(seed));
        self.remaining = i64::from(self.cfg.verify_iter);
        self.solved = false;
        let cfg = &self.cfg;
        let image = cfg.vision.then(|| {
            Arc::new(render_hand(
                &self.hand.cards,
                cfg.render_formula_label,
                cfg.image_size,
                cfg.card_faces,
            ))
        });
        self.transcript = Transcript::new(hand_prompt(&self.cfg, &self.hand), image);
        &self.transcript
    }

    fn step(&mut self, response: &str) -> Verdict {
        self.remaining -= 1;
        if self.remaining < 0 {
            // The extra call after the last graded attempt: penalised without reading it.
            return Verdict {
                reward: reward::STEP_LIMIT,
                message: "step_limit_reached".into(),
                terminated: false,
                truncated: true,
            };
        }
        let Grade { reward, message } = self.grade(response);
        let terminated = reward == reward::CORRECT_SOLUTION;
        if terminated {
            self.solved = true;
        } else {
            self.transcript
                .push_revision(response, revision_feedback(&message));
        }
        Verdict {
            reward,
            message,
            terminated,
            truncated: false,
        }
    }

    fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    fn success(&self) -> bool {
        self.solved
    }
}
