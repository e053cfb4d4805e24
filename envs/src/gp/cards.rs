//! Cards, hands, the face-card value rules and the card samplers (paper-spec §1.2, §1.3, §8 D1).

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// A suit. The image key uses the letters H, S, D, C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Suit {
    Hearts,
    Spades,
    Diamonds,
    Clubs,
}

impl Suit {
    /// The reference's one-letter code.
    pub fn letter(self) -> char {
        match self {
            Suit::Hearts => 'H',
            Suit::Spades => 'S',
            Suit::Diamonds => 'D',
            Suit::Clubs => 'C',
        }
    }

    /// Whether the suit is printed in red.
    pub fn is_red(self) -> bool {
        matches!(self, Suit::Hearts | Suit::Diamonds)
    }
}

/// Which suits cards are drawn from (`face_cards_color` in the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuitSet {
    /// ♥♠♦♣.
    Mixed,
    /// ♥♦ (the visual-OOD variant).
    Red,
    /// ♠♣ (the GP-VL training variant).
    Black,
}

impl SuitSet {
    /// The suits in the reference's order.
    pub fn suits(self) -> &'static [Suit] {
        match self {
            SuitSet::Mixed => &[Suit::Hearts, Suit::Spades, Suit::Diamonds, Suit::Clubs],
            SuitSet::Red => &[Suit::Hearts, Suit::Diamonds],
            SuitSet::Black => &[Suit::Spades, Suit::Clubs],
        }
    }
}

/// How J, Q and K are valued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceRule {
    /// J, Q, K count as 10 (the in-distribution rule).
    Id,
    /// J, Q, K count as 11, 12, 13 (the rule-OOD variant).
    Ood,
    /// Not in the reference: J, Q, K count as the given values (1..=99), e.g. for pretraining a
    /// small model on several rules. In TOML: `face_cards = { custom = [5, 6, 7] }`.
    Custom([u8; 3]),
}

impl FaceRule {
    /// The values of J, Q and K.
    pub fn face_values(self) -> [u8; 3] {
        match self {
            FaceRule::Id => [10; 3],
            FaceRule::Ood => [11, 12, 13],
            FaceRule::Custom(values) => values,
        }
    }

    /// The numeric value of a rank under this rule.
    pub fn value(self, rank: u8) -> u8 {
        match rank {
            11..=13 => self.face_values()[usize::from(rank - 11)],
            _ => rank,
        }
    }

    /// The prompt's `{face_card_msg}` (with the reference's trailing period): one value when
    /// J, Q and K count the same, else the three with "respectively".
    pub fn message(self) -> String {
        match self.face_values() {
            [j, q, k] if j == q && q == k => format!("'J', 'Q', and 'K' count as '{j}'."),
            [j, q, k] => {
                format!("'J', 'Q', and 'K' count as '{j}', '{q}', and '{k}' respectively.")
            }
        }
    }
}

/// How the four cards are drawn (§8 D1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Ranks uniform in 1..=13 and suits uniform in the suit set, independently (the reference).
    WithReplacement,
    /// Four distinct cards from the deck of the suit set (the paper's description).
    Deck,
}

/// One card: rank 1 (ace) ..= 13 (king) and suit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Card {
    pub rank: u8,
    pub suit: Suit,
}

impl Card {
    /// The name shown to the model: A, 2..10, J, Q, K.
    pub fn plain_name(self) -> &'static str {
        const NAMES: [&str; 13] = [
            "A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K",
        ];
        NAMES[(self.rank.clamp(1, 13) - 1) as usize]
    }

    /// The reference's image key, e.g. `HT`, `SK`.
    pub fn key(self) -> String {
        let rank = match self.rank {
            10 => "T",
            _ => self.plain_name(),
        };
        format!("{}{}", self.suit.letter(), rank)
    }

    /// The rank named by a plain name or image-key rank (`A`, `2`..`10`, `T`, `J`, `Q`, `K`).
    pub fn rank_from_name(name: &str) -> Option<u8> {
        match name.trim().to_ascii_uppercase().as_str() {
            "A" | "1" => Some(1),
            "T" | "10" => Some(10),
            "J" => Some(11),
            "Q" => Some(12),
            "K" => Some(13),
            n => n.parse::<u8>().ok().filter(|r| (2..=9).contains(r)),
        }
    }
}

/// Draws four cards. With `at_least_one_face` (the rule-OOD sampler) one rank is forced into
/// J..=K as the reference does (three uniform ranks, one in 11..=13, shuffled) or, with `Deck`,
/// hands without a face card are redrawn.
pub fn draw_cards(
    rng: &mut Rng,
    sampling: Sampling,
    suits: SuitSet,
    at_least_one_face: bool,
) -> [Card; 4] {
    let suit_list = suits.suits();
    match sampling {
        Sampling::WithReplacement => {
            let mut ranks = [0u8; 4];
            for r in ranks.iter_mut().take(if at_least_one_face { 3 } else { 4 }) {
                *r = rng.range_inclusive(1, 13) as u8;
            }
            if at_least_one_face {
                ranks[3] = rng.range_inclusive(11, 13) as u8;
                rng.shuffle(&mut ranks);
            }
            ranks.map(|rank| Card {
                rank,
                suit: *rng.choose(suit_list),
            })
        }
        Sampling::Deck => loop {
            let deck_size = 13 * suit_list.len() as u64;
            let mut picked: Vec<u64> = Vec::with_capacity(4);
            while picked.len() < 4 {
                let c = rng.below(deck_size);
                if !picked.contains(&c) {
                    picked.push(c);
                }
            }
            let cards: Vec<Card> = picked
                .iter()
                .map(|&c| Card {
                    rank: (c % 13) as u8 + 1,
                    suit: suit_list[(c / 13) as usize],
                })
                .collect();
            if !at_least_one_face || cards.iter().any(|c| c.rank >= 11) {
                return [cards[0], cards[1], cards[2], cards[3]];
            }
        },
    }
}

/// Python's `str(list)` of strings: `['A', '3', '10', 'K']`.
pub fn python_str_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{}'", s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// Python's `str(list)` of integers: `[1, 3, 10, 6]`.
pub fn python_int_list<T: std::fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(|v| v.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_keys() {
        let k = Card {
            rank: 13,
            suit: Suit::Spades,
        };
        let t = Card {
            rank: 10,
            suit: Suit::Hearts,
        };
        assert_eq!((k.plain_name(), k.key()), ("K", "SK".to_string()));
        assert_eq!((t.plain_name(), t.key()), ("10", "HT".to_string()));
        assert_eq!(FaceRule::Id.value(12), 10);
        assert_eq!(FaceRule::Ood.value(12), 12);
        assert_eq!(FaceRule::Custom([5, 6, 7]).value(13), 7);
        assert_eq!(FaceRule::Custom([5, 6, 7]).value(4), 4);
        assert_eq!(FaceRule::Id.message(), "'J', 'Q', and 'K' count as '10'.");
        assert_eq!(
            FaceRule::Custom([11, 12, 13]).message(),
            FaceRule::Ood.message()
        );
        assert_eq!(
            FaceRule::Custom([4, 4, 4]).message(),
            "'J', 'Q', and 'K' count as '4'."
        );
        assert_eq!(Card::rank_from_name("t"), Some(10));
        assert_eq!(Card::rank_from_name("11"), None);
        assert_eq!(python_str_list(&["A", "10"]), "['A', '10']");
        assert_eq!(python_int_list(&[1, 10]), "[1, 10]");
    }

    #[test]
    fn samplers_respect_their_constraints() {
        let mut rng = Rng::new(5);
        for _ in 0..2000 {
            let ood = draw_cards(&mut rng, Sampling::WithReplacement, SuitSet::Red, true);
            assert!(ood.iter().any(|c| c.rank >= 11));
            assert!(
                ood.iter()
                    .all(|c| c.suit.is_red() && (1..=13).contains(&c.rank))
            );
            let deck = draw_cards(&mut rng, Sampling::Deck, SuitSet::Black, true);
            assert!(deck.iter().any(|c| c.rank >= 11));
            for i in 0..4 {
                assert!(!deck[i].suit.is_red());
                for j in 0..i {
                    assert_ne!(deck[i], deck[j], "deck sampling repeats a card");
                }
            }
        }
    }

    #[test]
    fn with_replacement_repeats_cards_sometimes() {
        let mut rng = Rng::new(9);
        let dup = (0..5000)
            .map(|_| draw_cards(&mut rng, Sampling::WithReplacement, SuitSet::Black, false))
            .filter(|h| (0..4).any(|i| (0..i).any(|j| h[i] == h[j])))
            .count();
        assert!(
            dup > 100,
            "identical duplicate cards must occur, as in the reference ({dup})"
        );
    }
}
