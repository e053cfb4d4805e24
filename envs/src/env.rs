//! The interface every environment implements, and the conversation it keeps.
//!
//! An environment owns the transcript of the current episode. `reset` starts a new one from a
//! seed; `step` grades one model response and updates the transcript the way the reference
//! trainer does: on failure the response and a feedback turn are appended ("sequential
//! revision"); when an environment moves on (a navigation step) it starts a fresh prompt.

use std::sync::Arc;

use image::RgbImage;
use serde::Serialize;

/// Who speaks a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Turn {
    pub role: Role,
    #[serde(rename = "content")]
    pub text: String,
}

/// The conversation the model sees next. The image, if any, belongs to the first user turn.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    pub turns: Vec<Turn>,
    pub image: Option<Arc<RgbImage>>,
}

impl Transcript {
    /// A transcript holding one user prompt (and its image).
    pub fn new(prompt: String, image: Option<Arc<RgbImage>>) -> Self {
        Transcript {
            turns: vec![Turn {
                role: Role::User,
                text: prompt,
            }],
            image,
        }
    }

    /// Appends the model's response and the user's feedback turn.
    pub fn push_revision(&mut self, response: &str, feedback: String) {
        self.turns.push(Turn {
            role: Role::Assistant,
            text: response.to_string(),
        });
        self.turns.push(Turn {
            role: Role::User,
            text: feedback,
        });
    }
}

/// The verifier's grade of one response, and what it means for the episode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The reward of this model call.
    pub reward: f64,
    /// The verifier's message (the reference's `info["Verify Info"]`).
    pub message: String,
    /// The episode ended because the task was solved (or, in navigation, stopped).
    pub terminated: bool,
    /// The episode ended because the step limit was reached.
    pub truncated: bool,
}

impl Verdict {
    /// Whether the episode is over and the caller should `reset`.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A verifiable, multi-turn environment.
pub trait Env {
    /// Starts a new episode, fully determined by `seed`, and returns its first prompt.
    fn reset(&mut self, seed: u64) -> &Transcript;
    /// Grades one response. After a verdict that is not `done()`, `transcript()` holds the
    /// conversation for the next call.
    fn step(&mut self, response: &str) -> Verdict;
    /// The conversation the model sees next.
    fn transcript(&self) -> &Transcript;
    /// Whether the current episode has succeeded (the paper's episode / route success).
    fn success(&self) -> bool;

    /// [`Env::reset`] for callers that must not panic on bad task data (a route whose points
    /// cannot be placed, a missing panorama): the error names what is wrong.
    fn checked_reset(&mut self, seed: u64) -> Result<&Transcript, EnvError> {
        Ok(self.reset(seed))
    }

    /// [`Env::step`] with the same promise as [`Env::checked_reset`].
    fn checked_step(&mut self, response: &str) -> Result<Verdict, EnvError> {
        Ok(self.step(response))
    }
}

/// Why an environment could not start or continue an episode (bad task data, not bad model
/// output: that is graded, never an error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);
