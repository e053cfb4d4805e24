//! The evaluation protocol, metrics, reports and the SFT-vs-RL study runner (issue 6).
