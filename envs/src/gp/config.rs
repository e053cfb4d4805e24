//! GeneralPoints settings. Every default reproduces the reference code (paper-spec §8).

use serde::{Deserialize, Serialize};

use super::cards::{FaceRule, Sampling, SuitSet};
use super::prompt::{PromptLayout, PromptText};
use super::render::CardFaces;
use super::verify::RewardScheme;

/// How a GeneralPoints environment behaves. Unknown fields in a config file are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpConfig {
    /// The number the formula must reach.
    pub target: i64,
    /// How J, Q, K are valued: `id` (10) or `ood` (11, 12, 13).
    pub face_cards: FaceRule,
    /// Force at least one J/Q/K into every hand (the reference's rule-OOD sampler).
    pub require_face_card: bool,
    /// Suits the cards are drawn from: `mixed`, `black` (GP-VL training), `red` (visual OOD).
    pub suits: SuitSet,
    /// `with_replacement` (reference) or `deck` (the paper's description).
    pub sampling: Sampling,
    /// Graded attempts per episode; one more call is made and penalised −1 (sequential revision).
    pub verify_iter: u32,
    /// GP-VL: the cards are shown as an image and the recognised cards are checked.
    pub vision: bool,
    /// Draw the paper-era "Formula:" label on GP-VL images.
    pub render_formula_label: bool,
    /// Side of the square GP-VL image in pixels: the reference's 1200, or the same layout scaled
    /// (not in the reference; small images for tiny models), 32..=4096.
    pub image_size: u32,
    /// How GP-VL card faces are drawn: `reference` (corner indices, a rank above a suit in the
    /// centre) or `large_rank` (not in the reference: the rank fills the card, a small suit in
    /// the corner, so that tiny models at small image sizes can read it).
    pub card_faces: CardFaces,
    /// `reference` prompt text (quirks included) or `cleaned`.
    pub prompt_text: PromptText,
    /// `reference` prompts and expert answers, or `compact` ones for tiny CPU models.
    pub prompt_layout: PromptLayout,
    /// Append the `[Output Example]` block (the `_EG` prompts used for API models).
    pub prompt_example: bool,
    /// `reference` rewards or the `paper`'s scheme.
    pub gp_reward: RewardScheme,
}

impl Default for GpConfig {
    fn default() -> Self {
        GpConfig {
            target: 24,
            face_cards: FaceRule::Id,
            require_face_card: false,
            suits: SuitSet::Mixed,
            sampling: Sampling::WithReplacement,
            verify_iter: 5,
            vision: false,
            render_formula_label: false,
            image_size: 1200,
            card_faces: CardFaces::Reference,
            prompt_text: PromptText::Reference,
            prompt_layout: PromptLayout::Reference,
            prompt_example: false,
            gp_reward: RewardScheme::Reference,
        }
    }
}

/// The evaluation variants of the paper (§1.5, §1.6, §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Face cards count 10; GP-VL shows black suits.
    Id,
    /// Face cards count 11/12/13 and every hand holds one.
    RuleOod,
    /// GP-VL with red suits, otherwise in-distribution.
    VisualOod,
    /// J, Q and K all count this value and every hand holds one: a rule new in every part
    /// (the all-5 and all-7 rules of "Debunk the Myth of SFT Generalization").
    AllFaces(u8),
}

impl GpConfig {
    /// The reference settings of a variant, for the text (`vision = false`) or vision task.
    pub fn variant(variant: Variant, vision: bool) -> Self {
        let base = GpConfig {
            vision,
            suits: if vision {
                SuitSet::Black
            } else {
                SuitSet::Mixed
            },
            ..GpConfig::default()
        };
        match variant {
            Variant::Id => base,
            Variant::RuleOod => GpConfig {
                face_cards: FaceRule::Ood,
                require_face_card: true,
                ..base
            },
            Variant::VisualOod => GpConfig {
                suits: SuitSet::Red,
                ..base
            },
            Variant::AllFaces(value) => GpConfig {
                face_cards: FaceRule::Custom([value; 3]),
                require_face_card: true,
                ..base
            },
        }
    }
}
