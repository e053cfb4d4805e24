//! The GP-VL observation: four cards on a casino-green 1200×1200 canvas at the reference's
//! positions (paper-spec §1.6), or the same layout scaled to another square size. Card faces are drawn here: rank glyphs and suit symbols in red or
//! black on a white card, with the rank and suit large in the centre so they read at a glance.

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::cards::{Card, Suit};
use crate::draw::{draw_text, fill_circle, fill_polygon, fill_rect, text_width};

/// The reference's canvas side in pixels; the layout below is in its units.
pub const CANVAS: u32 = 1200;
/// The smallest side drawn directly: smaller observations are drawn at a multiple and averaged.
const MIN_DRAWN: u32 = 400;
/// Card size: `int(1200 / 4 * 0.9)` by `int(270 * 7 / 5)`.
pub const CARD_W: u32 = 270;
pub const CARD_H: u32 = 378;
const TABLE_GREEN: Rgb<u8> = Rgb([0x35, 0x65, 0x4d]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BORDER: Rgb<u8> = Rgb([150, 150, 150]);
const RED: Rgb<u8> = Rgb([200, 16, 32]);
const BLACK: Rgb<u8> = Rgb([20, 20, 20]);

/// The top-left corner of card `i` (0..4): x = `5 + int(i * 270 * 1.1)`, y = `int((1200-378)/2)`.
pub fn card_origin(i: usize) -> (u32, u32) {
    (
        5 + (i as f64 * CARD_W as f64 * 1.1) as u32,
        (CANVAS - CARD_H) / 2,
    )
}

/// Draws a suit symbol centred at `(cx, cy)`, `size` pixels tall.
pub fn draw_suit(img: &mut RgbImage, suit: Suit, cx: f32, cy: f32, size: f32, color: Rgb<u8>) {
    let s = size;
    // Points of a shape given in units of `size` around the centre.
    let pts = |p: &[(f32, f32)]| -> Vec<(f32, f32)> {
        p.iter().map(|(x, y)| (cx + x * s, cy + y * s)).collect()
    };
    match suit {
        Suit::Diamonds => fill_polygon(
            img,
            &pts(&[(0.0, -0.5), (0.37, 0.0), (0.0, 0.5), (-0.37, 0.0)]),
            color,
        ),
        Suit::Hearts => {
            fill_circle(img, cx - 0.24 * s, cy - 0.2 * s, 0.27 * s, color);
            fill_circle(img, cx + 0.24 * s, cy - 0.2 * s, 0.27 * s, color);
            fill_polygon(img, &pts(&[(-0.5, -0.1), (0.5, -0.1), (0.0, 0.5)]), color);
        }
        Suit::Spades => {
            fill_circle(img, cx - 0.24 * s, cy + 0.1 * s, 0.26 * s, color);
            fill_circle(img, cx + 0.24 * s, cy + 0.1 * s, 0.26 * s, color);
            fill_polygon(
                img,
                &pts(&[(-0.49, 0.16), (0.49, 0.16), (0.0, -0.5)]),
                color,
            );
            fill_polygon(img, &pts(&[(0.0, 0.1), (0.16, 0.5), (-0.16, 0.5)]), color);
        }
        Suit::Clubs => {
            fill_circle(img, cx, cy - 0.24 * s, 0.22 * s, color);
            fill_circle(img, cx - 0.24 * s, cy + 0.08 * s, 0.22 * s, color);
            fill_circle(img, cx + 0.24 * s, cy + 0.08 * s, 0.22 * s, color);
            fill_circle(img, cx, cy, 0.12 * s, color);
            fill_polygon(img, &pts(&[(0.0, 0.0), (0.15, 0.5), (-0.15, 0.5)]), color);
        }
    }
}

/// How card faces are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardFaces {
    /// Corner indices and a rank above a suit in the centre (the reference's look).
    #[default]
    Reference,
    /// The rank as large as the card allows, a small suit in the top-left corner: readable by
    /// tiny models at small image sizes (not in the reference).
    LargeRank,
}

impl CardFaces {
    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            CardFaces::Reference => "reference",
            CardFaces::LargeRank => "large_rank",
        }
    }
}

/// Draws one card face with its top-left corner at `(x0, y0)` of the reference canvas, every
/// length scaled by `s` (1 at the reference's 1200×1200).
pub fn draw_card(img: &mut RgbImage, card: Card, (x0, y0): (u32, u32), s: f32, faces: CardFaces) {
    let (x, y, w, h) = (
        x0 as f32 * s,
        y0 as f32 * s,
        CARD_W as f32 * s,
        CARD_H as f32 * s,
    );
    // A rounded white card with a grey border: two rectangles and four corner discs, twice.
    let rounded = |img: &mut RgbImage, inset: f32, color: Rgb<u8>| {
        let (r, inset) = ((18.0 - inset) * s, inset * s);
        let (l, t, w, h) = (x + inset, y + inset, w - 2.0 * inset, h - 2.0 * inset);
        fill_rect(
            img,
            (l + r) as i64,
            t as i64,
            (w - 2.0 * r) as i64,
            h as i64,
            color,
        );
        fill_rect(
            img,
            l as i64,
            (t + r) as i64,
            w as i64,
            (h - 2.0 * r) as i64,
            color,
        );
        for (cx, cy) in [
            (l + r, t + r),
            (l + w - r, t + r),
            (l + r, t + h - r),
            (l + w - r, t + h - r),
        ] {
            fill_circle(img, cx, cy, r, color);
        }
    };
    rounded(img, 0.0, BORDER);
    rounded(img, 3.0, WHITE);

    let color = if card.suit.is_red() { RED } else { BLACK };
    let name = card.plain_name();
    if faces == CardFaces::LargeRank {
        let pad = 24.0 * s;
        let tall = 250.0 * s;
        let big_h = tall.min(tall * (w - 2.0 * pad) / text_width(name, tall));
        let big_w = text_width(name, big_h);
        let top = y + (h - big_h) / 2.0 + 20.0 * s;
        draw_text(img, x + (w - big_w) / 2.0, top, name, big_h, color);
        draw_suit(img, card.suit, x + 44.0 * s, y + 44.0 * s, 56.0 * s, color);
        return;
    }
    // Corner indices: rank over a small suit, top-left and bottom-right.
    let (corner_h, pad) = (46.0 * s, 12.0 * s);
    let corner_w = text_width(name, corner_h);
    draw_text(img, x + pad, y + 8.0 * s, name, corner_h, color);
    let suit_h = 30.0 * s;
    draw_suit(
        img,
        card.suit,
        x + pad + corner_w / 2.0,
        y + 74.0 * s,
        suit_h,
        color,
    );
    draw_text(
        img,
        x + w - pad - corner_w,
        y + h - 8.0 * s - corner_h - 44.0 * s,
        name,
        corner_h,
        color,
    );
    draw_suit(
        img,
        card.suit,
        x + w - pad - corner_w / 2.0,
        y + h - 26.0 * s,
        suit_h,
        color,
    );
    // The centre: a large rank above a large suit.
    let big_h = 110.0 * s;
    let big_w = text_width(name, big_h);
    draw_text(img, x + (w - big_w) / 2.0, y + 82.0 * s, name, big_h, color);
    draw_suit(img, card.suit, x + w / 2.0, y + 262.0 * s, 96.0 * s, color);
}

/// The observation of a hand, `size`×`size` pixels: the reference's 1200×1200 layout scaled;
/// `formula_label` adds the paper-era white "Formula:".
///
/// Below [`MIN_DRAWN`] pixels the hand is drawn at a whole multiple of `size` and area-averaged
/// down, so the glyphs are rasterised large enough to keep their strokes.
pub fn render_hand(
    cards: &[Card; 4],
    formula_label: bool,
    size: u32,
    faces: CardFaces,
) -> RgbImage {
    let k = MIN_DRAWN.div_ceil(size).max(1);
    let side = size * k;
    let s = side as f32 / CANVAS as f32;
    let mut img = RgbImage::from_pixel(side, side, TABLE_GREEN);
    for (i, &card) in cards.iter().enumerate() {
        draw_card(&mut img, card, card_origin(i), s, faces);
    }
    if formula_label {
        // DejaVuSans 64 px at (10, 840) in the paper-era code; the formula line below is empty.
        draw_text(&mut img, 10.0 * s, 840.0 * s, "Formula:", 64.0 * s, WHITE);
    }
    if k == 1 { img } else { shrink(&img, k) }
}

/// The mean of every `k`×`k` block.
fn shrink(img: &RgbImage, k: u32) -> RgbImage {
    let area = k * k;
    RgbImage::from_fn(img.width() / k, img.height() / k, |x, y| {
        let mut sum = [0u32; 3];
        for yy in y * k..(y + 1) * k {
            for xx in x * k..(x + 1) * k {
                let p = img.get_pixel(xx, yy).0;
                (0..3).for_each(|c| sum[c] += u32::from(p[c]));
            }
        }
        Rgb(sum.map(|v| ((v + area / 2) / area) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_sit_at_the_reference_positions() {
        assert_eq!(
            (0..4).map(card_origin).collect::<Vec<_>>(),
            vec![(5, 411), (302, 411), (599, 411), (896, 411)]
        );
        let hand = [
            Card {
                rank: 1,
                suit: Suit::Spades,
            },
            Card {
                rank: 10,
                suit: Suit::Hearts,
            },
            Card {
                rank: 12,
                suit: Suit::Diamonds,
            },
            Card {
                rank: 7,
                suit: Suit::Clubs,
            },
        ];
        let img = render_hand(&hand, false, CANVAS, CardFaces::Reference);
        assert_eq!(img.dimensions(), (1200, 1200));
        assert_eq!(
            img.get_pixel(600, 100).0,
            TABLE_GREEN.0,
            "table above the cards"
        );
        for (i, card) in hand.iter().enumerate() {
            let (x, y) = card_origin(i);
            assert_ne!(
                img.get_pixel(x + 135, y + 190).0,
                TABLE_GREEN.0,
                "card {i} is drawn"
            );
            let red_ink = (y..y + CARD_H)
                .flat_map(|py| (x..x + CARD_W).map(move |px| (px, py)))
                .filter(|&(px, py)| {
                    let p = img.get_pixel(px, py).0;
                    p[0] > 150 && p[1] < 80
                })
                .count();
            assert_eq!(
                red_ink > 2000,
                card.suit.is_red(),
                "card {i}: red ink {red_ink}"
            );
        }
        let labelled = render_hand(&hand, true, CANVAS, CardFaces::Reference);
        let label_ink = (840..904)
            .flat_map(|y| (10..300).map(move |x| (x, y)))
            .filter(|&(x, y)| labelled.get_pixel(x, y).0 == [255, 255, 255])
            .count();
        assert!(label_ink > 500);
    }

    /// FNV-1a over the pixels.
    fn fingerprint(img: &RgbImage) -> u64 {
        img.as_raw().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn hand(cards: [(u8, Suit); 4]) -> [Card; 4] {
        cards.map(|(rank, suit)| Card { rank, suit })
    }

    #[test]
    fn the_reference_size_is_pixel_for_pixel_unchanged() {
        // Fingerprints of the images rendered before the size became an option.
        let h = hand([
            (1, Suit::Spades),
            (10, Suit::Hearts),
            (12, Suit::Diamonds),
            (7, Suit::Clubs),
        ]);
        assert_eq!(
            fingerprint(&render_hand(&h, false, CANVAS, CardFaces::Reference)),
            0x8045b076686ddc00
        );
        assert_eq!(
            fingerprint(&render_hand(&h, true, CANVAS, CardFaces::Reference)),
            0xf355c523de9a7f57
        );
    }

    /// Large-rank faces: at a tiny model's 128 pixels, changing one card's rank changes more
    /// than twice the pixels it changes with the reference's faces (whose central rank is 5
    /// pixels tall); red suits draw red ranks.
    #[test]
    fn large_rank_faces_make_the_rank_visible_at_small_sizes() {
        let a = hand([
            (1, Suit::Spades),
            (10, Suit::Clubs),
            (12, Suit::Spades),
            (7, Suit::Clubs),
        ]);
        let mut b = a;
        b[2].rank = 8;
        let changed = |faces| {
            let (x, y) = (
                render_hand(&a, false, 128, faces),
                render_hand(&b, false, 128, faces),
            );
            x.pixels().zip(y.pixels()).filter(|(p, q)| p != q).count()
        };
        let (reference, large) = (changed(CardFaces::Reference), changed(CardFaces::LargeRank));
        assert!(large > 2 * reference, "{large} vs {reference} pixels");
        let red = a.map(|c| Card {
            suit: Suit::Hearts,
            ..c
        });
        let img = render_hand(&red, false, 400, CardFaces::LargeRank);
        let ink = |img: &RgbImage| img.pixels().filter(|p| p.0 == BLACK.0).count();
        assert_eq!(ink(&img), 0, "red suits draw red ranks");
        assert!(img.pixels().any(|p| p.0 == RED.0));
    }

    #[test]
    fn small_observations_keep_the_layout_and_tell_cards_apart() {
        let a = hand([
            (1, Suit::Spades),
            (10, Suit::Hearts),
            (12, Suit::Diamonds),
            (7, Suit::Clubs),
        ]);
        for size in [32, 96, 128, 400, 401, 1000] {
            let img = render_hand(&a, false, size, CardFaces::Reference);
            assert_eq!(img.dimensions(), (size, size));
            // The table's green above the cards, a card's white near the middle of the first.
            let at = |x: u32, y: u32| img.get_pixel(x * size / CANVAS, y * size / CANVAS).0;
            assert_eq!(at(600, 100), TABLE_GREEN.0, "{size}");
            assert_eq!(at(60, 601), WHITE.0, "{size}");
        }
        let small = |cards| render_hand(&hand(cards), false, 96, CardFaces::Reference);
        let base = small([
            (1, Suit::Spades),
            (10, Suit::Spades),
            (12, Suit::Clubs),
            (7, Suit::Clubs),
        ]);
        for other in [
            [
                (2, Suit::Spades),
                (10, Suit::Spades),
                (12, Suit::Clubs),
                (7, Suit::Clubs),
            ],
            [
                (1, Suit::Clubs),
                (10, Suit::Spades),
                (12, Suit::Clubs),
                (7, Suit::Clubs),
            ],
            [
                (1, Suit::Spades),
                (10, Suit::Spades),
                (13, Suit::Clubs),
                (7, Suit::Clubs),
            ],
            [
                (1, Suit::Spades),
                (10, Suit::Spades),
                (12, Suit::Clubs),
                (8, Suit::Clubs),
            ],
        ] {
            let img = small(other);
            let differ = base
                .pixels()
                .zip(img.pixels())
                .filter(|(p, q)| p != q)
                .count();
            assert!(differ > 20, "{other:?}: {differ} pixels differ");
        }
    }
}
