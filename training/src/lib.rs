//! SFT on burn-train's Learner and the multi-step PPO learner (issues 4 and 5).
