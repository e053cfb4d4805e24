//! Landmark logos: a bold coloured shape on a white board that a business shows in place of its
//! name sign (`sftvsrl nav world --landmarks logos`), large enough to recognise in views a few
//! dozen pixels wide where lettering cannot be read. A logo depends on the business's name alone,
//! so a name looks the same in every city style.

use image::{Rgb, RgbImage};

use super::style::Rgb as Color;
use crate::draw::{fill_shape, polygon_contains};

/// How businesses show who they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LandmarkLook {
    /// The name lettered on a storefront sign (the default, as in real street views).
    #[default]
    Signs,
    /// A large logo board: a shape and colour picked by the name.
    Logos,
}

impl LandmarkLook {
    pub fn name(self) -> &'static str {
        match self {
            LandmarkLook::Signs => "signs",
            LandmarkLook::Logos => "logos",
        }
    }
}

impl std::str::FromStr for LandmarkLook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "signs" => Ok(LandmarkLook::Signs),
            "logos" => Ok(LandmarkLook::Logos),
            other => Err(format!(
                "unknown landmark look {other:?}; expected signs or logos"
            )),
        }
    }
}

/// The shapes a logo can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    Circle,
    Triangle,
    Square,
    Diamond,
    Star,
    Cross,
    Ring,
    Bar,
}

pub const SHAPES: [Shape; 8] = [
    Shape::Circle,
    Shape::Triangle,
    Shape::Square,
    Shape::Diamond,
    Shape::Star,
    Shape::Cross,
    Shape::Ring,
    Shape::Bar,
];

/// Saturated logo colours, far apart in hue or lightness, all distinct from the white board.
pub const COLORS: [Color; 8] = [
    [220, 24, 32],  // red
    [250, 128, 0],  // orange
    [236, 196, 0],  // yellow
    [24, 160, 56],  // green
    [0, 168, 208],  // cyan
    [32, 56, 208],  // blue
    [150, 40, 200], // purple
    [24, 24, 24],   // black
];

/// The board behind the shape, and its frame.
pub const BOARD: Color = [248, 248, 244];
const FRAME: Color = [60, 60, 64];

/// A business's logo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Logo {
    pub shape: Shape,
    pub color: Color,
}

/// FNV-1a: a hash that stays the same across platforms and releases.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The logo of the business called `name`: one of the 64 shape and colour pairs, picked by a
/// stable hash of the name.
pub fn logo_of(name: &str) -> Logo {
    let h = fnv1a(name);
    Logo {
        shape: SHAPES[(h % 8) as usize],
        color: COLORS[((h >> 8) % 8) as usize],
    }
}

/// The inside test of `shape` in board units (−1..1 across, y down).
fn silhouette(shape: Shape) -> Box<dyn Fn(f32, f32) -> bool> {
    let r = |x: f32, y: f32| (x * x + y * y).sqrt();
    match shape {
        Shape::Circle => Box::new(move |x, y| r(x, y) <= 0.72),
        Shape::Ring => Box::new(move |x, y| (0.42..=0.76).contains(&r(x, y))),
        Shape::Square => Box::new(|x: f32, y: f32| x.abs() <= 0.62 && y.abs() <= 0.62),
        Shape::Diamond => Box::new(|x: f32, y: f32| x.abs() + y.abs() <= 0.8),
        Shape::Cross => Box::new(|x: f32, y: f32| {
            (x.abs() <= 0.24 && y.abs() <= 0.76) || (y.abs() <= 0.24 && x.abs() <= 0.76)
        }),
        Shape::Bar => Box::new(|x: f32, y: f32| x.abs() <= 0.78 && y.abs() <= 0.28),
        Shape::Triangle => {
            Box::new(|x, y| polygon_contains(&[(0.0, -0.74), (0.78, 0.62), (-0.78, 0.62)], x, y))
        }
        Shape::Star => {
            // Five points, alternating outer and inner radii, the first pointing up.
            let star: Vec<(f32, f32)> = (0..10)
                .map(|k| {
                    let a = std::f32::consts::PI * (k as f32 / 5.0 - 0.5);
                    let rk = if k % 2 == 0 { 0.82 } else { 0.36 };
                    (rk * a.cos(), rk * a.sin() + 0.06)
                })
                .collect();
            Box::new(move |x, y| polygon_contains(&star, x, y))
        }
    }
}

/// The face of a logo board, `w`×`h` pixels: the shape, stretched to the board, on white
/// inside a dark frame.
pub fn logo_image(logo: Logo, w: u32, h: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(w, h, Rgb(FRAME));
    let (wf, hf) = (w as f32, h as f32);
    let frame = (wf.min(hf) * 0.05).max(1.0);
    let inner = (frame, frame, wf - frame, hf - frame);
    fill_shape(&mut img, inner, Rgb(BOARD), |_, _| true);
    let (half_w, half_h) = (wf / 2.0 - frame, hf / 2.0 - frame);
    let inside = silhouette(logo.shape);
    fill_shape(&mut img, inner, Rgb(logo.color), |x, y| {
        inside((x - wf / 2.0) / half_w, (y - hf / 2.0) / half_h)
    });
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logos_depend_on_the_name_only_and_differ() {
        assert_eq!(logo_of("Hudson Deli"), logo_of("Hudson Deli"));
        // Pinned: a logo never changes between builds or platforms.
        assert_eq!(
            logo_of("Hudson Deli"),
            Logo {
                shape: Shape::Square,
                color: COLORS[0],
            }
        );
        assert_eq!(
            logo_of("Trattoria Bella"),
            Logo {
                shape: Shape::Cross,
                color: COLORS[4],
            }
        );
        assert_eq!(fnv1a("a"), 0xaf63dc4c8601ec8c);
        // Every shape and colour turns up among a few dozen names.
        let logos: Vec<Logo> = (0..200).map(|i| logo_of(&format!("Shop {i}"))).collect();
        assert!(SHAPES.iter().all(|s| logos.iter().any(|l| l.shape == *s)));
        assert!(COLORS.iter().all(|c| logos.iter().any(|l| l.color == *c)));
    }

    #[test]
    fn every_shape_draws_a_distinct_silhouette() {
        let masks: Vec<Vec<bool>> = SHAPES
            .iter()
            .map(|&shape| {
                let img = logo_image(logo_of_shape(shape), 32, 32);
                img.pixels().map(|p| p.0 == COLORS[0]).collect()
            })
            .collect();
        for (i, a) in masks.iter().enumerate() {
            let ink = a.iter().filter(|&&b| b).count();
            assert!(ink > 60, "{:?}: {ink} pixels", SHAPES[i]);
            for (j, b) in masks.iter().enumerate().skip(i + 1) {
                let differ = a.iter().zip(b).filter(|(p, q)| p != q).count();
                assert!(differ > 40, "{:?} vs {:?}: {differ}", SHAPES[i], SHAPES[j]);
            }
        }
    }

    fn logo_of_shape(shape: Shape) -> Logo {
        Logo {
            shape,
            color: COLORS[0],
        }
    }

    #[test]
    fn looks_parse_by_name() {
        assert_eq!("logos".parse(), Ok(LandmarkLook::Logos));
        assert_eq!(LandmarkLook::default().name(), "signs");
        assert_eq!(
            "icons".parse::<LandmarkLook>().unwrap_err(),
            "unknown landmark look \"icons\"; expected signs or logos"
        );
    }
}
