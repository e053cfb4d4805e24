//! V-IRL street navigation as a verifiable text and vision task (paper-spec §2).
