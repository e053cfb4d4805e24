//! GeneralPoints: the 24-points card game as a verifiable text and vision task (paper-spec §1).
