//! Equirectangular panoramas of a synthetic city, ray-cast column by column: sky, road and
//! sidewalk with markings, and building facades with windows, storefronts and signs that carry
//! the businesses' names (or their logos, see [`super::logo`]). Column `X` of a `W`-wide panorama faces compass heading
//! `360·X/(W-1) - rotation` and row `Y` elevation `(1/2 - Y/(H-1))·180°` — the convention the
//! reference's perspective crop assumes (see [`crate::nav::panorama`]).

use image::{Rgb, RgbImage};

use super::city::{Capture, City, LETTER_M, Place, Side, Sign};
use super::logo::{LandmarkLook, logo_image, logo_of};
use super::style::Rgb as Color;
use crate::draw::{draw_text, text_width};
use crate::nav::geo::py_mod;

/// Camera height above the street, in metres.
const CAMERA_M: f64 = 2.5;
/// Farthest building considered, in metres.
const FAR_M: f64 = 600.0;
/// Sign texture resolution, in pixels per metre.
const SIGN_PX_PER_M: f64 = 48.0;
/// Top of the ground floor, in metres.
const GROUND_FLOOR_M: f64 = 4.0;
/// Height of a logo board, in metres, where the building leaves room; its width is up to twice
/// that, as the grid's diagonal views see walls at 45° or more and foreshorten them.
const LOGO_M: f64 = 5.5;
/// Height of a logo board's lower edge, in metres.
const LOGO_BOTTOM_M: f64 = 3.0;
/// Logo texture resolution, in pixels per metre.
const LOGO_PX_PER_M: f64 = 24.0;

/// A sign's pre-rendered face.
struct SignFace {
    side: Side,
    from: f64,
    to: f64,
    bottom: f64,
    top: f64,
    image: RgbImage,
}

/// Everything the renderer needs besides the city: the sign faces, grouped by lot.
pub struct Scene<'a> {
    city: &'a City,
    signs_by_lot: Vec<Vec<SignFace>>,
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn rgb(c: Color) -> [f32; 3] {
    [c[0] as f32, c[1] as f32, c[2] as f32]
}

fn scale(c: [f32; 3], k: f32) -> [f32; 3] {
    [c[0] * k, c[1] * k, c[2] * k]
}

/// The fractional part, always in `[0, 1)`.
fn frac(x: f64) -> f64 {
    x - x.floor()
}

/// Renders a sign's lettering: the name centred on a bordered board.
fn sign_image(name: &str, length_m: f64, height_m: f64, (board, ink): (Color, Color)) -> RgbImage {
    let (w, h) = (
        (length_m * SIGN_PX_PER_M).round().max(8.0) as u32,
        (height_m * SIGN_PX_PER_M).round().max(8.0) as u32,
    );
    let mut img = RgbImage::from_pixel(w, h, Rgb(board));
    let border = Rgb(ink);
    for x in 0..w {
        for y in [0, 1, h - 2, h - 1] {
            img.put_pixel(x, y, border);
        }
    }
    for y in 0..h {
        for x in [0, 1, w - 2, w - 1] {
            img.put_pixel(x, y, border);
        }
    }
    let pad = 0.3 * SIGN_PX_PER_M as f32;
    let unit = text_width(name, 1.0).max(1e-3);
    let text_h = (LETTER_M as f32 * SIGN_PX_PER_M as f32)
        .min((w as f32 - 2.0 * pad) / unit)
        .max(4.0);
    let x = (w as f32 - text_h * unit) / 2.0;
    let y = (h as f32 - text_h) / 2.0;
    draw_text(&mut img, x, y, name, text_h, Rgb(ink));
    img
}

/// The logo board that stands in for `sign`: centred on it, as large as its wall and its
/// building allow.
fn logo_face(city: &City, place: &Place, sign: &Sign) -> SignFace {
    let lot = &city.lots[place.lot];
    let (lo, hi) = match sign.side {
        Side::U0 | Side::U1 => (lot.v0 + 0.5, lot.v1 - 0.5),
        Side::V0 | Side::V1 => (lot.u0 + 0.5, lot.u1 - 0.5),
    };
    let height = LOGO_M.min(lot.height - 0.8 - LOGO_BOTTOM_M);
    let width = (2.0 * height).min(hi - lo);
    let centre = ((sign.from + sign.to) / 2.0).clamp(lo + width / 2.0, hi - width / 2.0);
    // Keep the sign's reading direction, so the board faces the street the same way.
    let half = (sign.to - sign.from).signum() * width / 2.0;
    let px = |m: f64| (m * LOGO_PX_PER_M).round().max(8.0) as u32;
    SignFace {
        side: sign.side,
        from: centre - half,
        to: centre + half,
        bottom: LOGO_BOTTOM_M,
        top: LOGO_BOTTOM_M + height,
        image: logo_image(logo_of(&place.name), px(width), px(height)),
    }
}

impl<'a> Scene<'a> {
    /// Prepares the sign faces, or logo boards, of every business in `city`.
    pub fn new(city: &'a City, look: LandmarkLook) -> Self {
        let mut signs_by_lot: Vec<Vec<SignFace>> =
            (0..city.lots.len()).map(|_| Vec::new()).collect();
        for place in &city.places {
            for s in &place.signs {
                let face = match look {
                    LandmarkLook::Logos => logo_face(city, place, s),
                    LandmarkLook::Signs => SignFace {
                        side: s.side,
                        from: s.from,
                        to: s.to,
                        bottom: s.bottom,
                        top: s.top,
                        image: sign_image(
                            &place.name,
                            (s.to - s.from).abs(),
                            s.top - s.bottom,
                            place.sign_colors,
                        ),
                    },
                };
                signs_by_lot[place.lot].push(face);
            }
        }
        Scene { city, signs_by_lot }
    }

    /// The panorama seen from `capture`, `width`×`width/2` pixels.
    pub fn render(&self, capture: &Capture, width: u32) -> RgbImage {
        let height = width / 2;
        let mut img = RgbImage::new(width, height);
        let (cu, cv) = capture.uv;
        let mut hits = Vec::new();
        for x in 0..width {
            let heading = py_mod(
                360.0 * x as f64 / (width - 1) as f64 - capture.rotation,
                360.0,
            );
            let (du, dv) = self.city.frame.direction(heading);
            self.cast(cu, cv, du, dv, &mut hits);
            for y in 0..height {
                let elevation = (0.5 - y as f64 / (height - 1) as f64) * std::f64::consts::PI;
                let c = self.shade(cu, cv, du, dv, elevation.tan(), elevation, heading, &hits);
                img.put_pixel(
                    x,
                    y,
                    Rgb([
                        c[0].clamp(0.0, 255.0) as u8,
                        c[1].clamp(0.0, 255.0) as u8,
                        c[2].clamp(0.0, 255.0) as u8,
                    ]),
                );
            }
        }
        img
    }

    /// Every building wall the ray from `(cu, cv)` along `(du, dv)` enters, nearest first:
    /// `(distance, lot, side, position along the wall)`.
    fn cast(&self, cu: f64, cv: f64, du: f64, dv: f64, hits: &mut Vec<(f64, usize, Side, f64)>) {
        hits.clear();
        for (i, lot) in self.city.lots.iter().enumerate() {
            let slab = |lo: f64, hi: f64, c: f64, d: f64| -> Option<(f64, f64)> {
                if d.abs() < 1e-12 {
                    return (lo..=hi)
                        .contains(&c)
                        .then_some((f64::NEG_INFINITY, f64::INFINITY));
                }
                let (a, b) = ((lo - c) / d, (hi - c) / d);
                Some((a.min(b), a.max(b)))
            };
            let (Some((ua, ub)), Some((va, vb))) =
                (slab(lot.u0, lot.u1, cu, du), slab(lot.v0, lot.v1, cv, dv))
            else {
                continue;
            };
            let (enter, exit) = (ua.max(va), ub.min(vb));
            if enter >= exit || enter <= 0.05 || enter > FAR_M {
                continue;
            }
            let (side, along) = if ua > va {
                (if du > 0.0 { Side::U0 } else { Side::U1 }, cv + enter * dv)
            } else {
                (if dv > 0.0 { Side::V0 } else { Side::V1 }, cu + enter * du)
            };
            hits.push((enter, i, side, along));
        }
        hits.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    #[allow(clippy::too_many_arguments)]
    fn shade(
        &self,
        cu: f64,
        cv: f64,
        du: f64,
        dv: f64,
        tan_e: f64,
        elevation: f64,
        heading: f64,
        hits: &[(f64, usize, Side, f64)],
    ) -> [f32; 3] {
        let pal = &self.city.look.palette;
        for &(t, lot, side, along) in hits {
            let z = CAMERA_M + t * tan_e;
            if z < 0.0 {
                break;
            }
            if z <= self.city.lots[lot].height {
                let haze = (t / FAR_M).min(0.5) as f32;
                return mix(
                    self.facade(lot, side, along, z, t),
                    rgb(pal.sky_horizon),
                    haze,
                );
            }
        }
        if tan_e > 0.0 {
            let t = (elevation / std::f64::consts::FRAC_PI_2).sqrt() as f32;
            let sky = mix(rgb(pal.sky_horizon), rgb(pal.sky_zenith), t);
            // Soft streaks of cloud.
            let h = heading.to_radians();
            let n = (3.0 * h + 2.0 * (5.0 * h).sin()).sin()
                * (18.0 * elevation + 3.0 * (4.0 * h).sin()).sin();
            let cloud = ((n - 0.6) * 1.2).clamp(0.0, 0.35) as f32 * (1.0 - t);
            return mix(sky, [245.0, 245.0, 248.0], cloud);
        }
        let g = CAMERA_M / -tan_e.min(-1e-9);
        let c = self.ground(cu + g * du, cv + g * dv, g);
        mix(c, rgb(pal.sky_horizon), (g / 900.0).min(0.6) as f32)
    }

    fn ground(&self, u: f64, v: f64, distance: f64) -> [f32; 3] {
        let city = self.city;
        let (look, pal) = (&city.look, &city.look.palette);
        let nearest = |lines: &[f64], x: f64| {
            lines
                .iter()
                .map(|&l| x - l)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(f64::MAX)
        };
        let (du, dv) = (nearest(&city.avenues, u), nearest(&city.streets, v));
        let (ha, hs) = (look.avenue_half_road, look.street_half_road);
        let detail = (1.0 - distance / 60.0).clamp(0.0, 1.0) as f32;
        if du.abs() < ha || dv.abs() < hs {
            let asphalt = rgb(pal.asphalt);
            if du.abs() < ha && dv.abs() < hs {
                return asphalt;
            }
            // Offset from this road's centre line, distance past the crossing, position along it.
            let (across, beyond, along, dashed) = if du.abs() < ha {
                (du, dv.abs() - hs, v, false)
            } else {
                (dv, du.abs() - ha, u, true)
            };
            let zebra = (0.4..3.4).contains(&beyond) && frac(across) < 0.5;
            let centre =
                beyond >= 3.4 && across.abs() < 0.12 && (!dashed || frac(along / 6.0) < 0.5);
            return match (zebra, centre) {
                (true, _) => mix(asphalt, rgb(pal.crossing), 0.3 + 0.6 * detail),
                (_, true) => mix(asphalt, rgb(pal.centre_line), 0.3 + 0.6 * detail),
                _ => asphalt,
            };
        }
        let curb = du.abs() < ha + 0.25 || dv.abs() < hs + 0.25;
        if curb {
            return scale(rgb(pal.sidewalk), 1.15);
        }
        let seam = frac(u / 1.5) < 0.06 || frac(v / 1.5) < 0.06;
        if seam {
            mix(rgb(pal.sidewalk), rgb(pal.sidewalk_seam), detail)
        } else {
            rgb(pal.sidewalk)
        }
    }

    fn facade(&self, lot_idx: usize, side: Side, along: f64, z: f64, distance: f64) -> [f32; 3] {
        let lot = &self.city.lots[lot_idx];
        let pal = &self.city.look.palette;
        let detail = (1.0 - distance / 80.0).clamp(0.0, 1.0) as f32;
        // Walls facing the sun (from the south-east of the grid) are brighter.
        let light = match side {
            Side::U0 => 0.78,
            Side::U1 => 1.0,
            Side::V0 => 0.92,
            Side::V1 => 0.7,
        };
        for sign in &self.signs_by_lot[lot_idx] {
            let (lo, hi) = (sign.from.min(sign.to), sign.from.max(sign.to));
            if sign.side == side
                && (sign.bottom..=sign.top).contains(&z)
                && (lo..=hi).contains(&along)
            {
                let tx = (along - sign.from) / (sign.to - sign.from);
                let ty = (sign.top - z) / (sign.top - sign.bottom);
                return scale(sample(&sign.image, tx, ty), 0.9 + 0.1 * light);
            }
        }
        let (start, len) = match side {
            Side::U0 | Side::U1 => (lot.v0, lot.v1 - lot.v0),
            Side::V0 | Side::V1 => (lot.u0, lot.u1 - lot.u0),
        };
        let s = along - start;
        let wall = rgb(lot.wall);
        let c = if z > lot.height - 0.6 {
            rgb(pal.cornice)
        } else if z < GROUND_FLOOR_M {
            if lot.place.is_some() || lot_idx.is_multiple_of(3) {
                // Shop windows: glass panes in frames above a low base.
                let pane = frac(s / 1.8);
                if !(0.5..=3.1).contains(&z) || pane < 0.08 {
                    scale(rgb(pal.window_frame), 0.55)
                } else {
                    mix(
                        rgb(pal.storefront),
                        rgb(pal.sky_horizon),
                        (0.15 * (z - 0.5) / 2.6) as f32,
                    )
                }
            } else if z < 0.6 {
                scale(wall, 0.7)
            } else {
                wall
            }
        } else {
            let zf = py_mod(z - GROUND_FLOOR_M, lot.floor_height);
            let sm = py_mod(s, lot.window_pitch);
            let (w0, w1) = (0.55, lot.window_pitch - 0.55);
            let in_rows = zf > 0.8 && zf < lot.floor_height - 0.5 && s > 1.0 && s < len - 1.0;
            if in_rows && sm > w0 && sm < w1 {
                let edge = (sm - w0)
                    .min(w1 - sm)
                    .min(zf - 0.8)
                    .min(lot.floor_height - 0.5 - zf);
                if edge < 0.08 {
                    mix(wall, rgb(pal.window_frame), detail)
                } else {
                    mix(
                        rgb(pal.window),
                        rgb(pal.sky_horizon),
                        (0.25 * zf / lot.floor_height) as f32,
                    )
                }
            } else if let (true, Some(shutter)) =
                (in_rows && (sm > w0 - 0.35 && sm < w1 + 0.35), pal.shutters)
            {
                mix(wall, rgb(shutter), detail)
            } else if frac(z / 0.3) < 0.08 {
                // Courses of brick or stone.
                mix(wall, scale(wall, 0.85), detail)
            } else {
                wall
            }
        };
        scale(c, light)
    }
}

/// Bilinear sample of `img` at texture coordinates in `[0, 1]`.
fn sample(img: &RgbImage, tx: f64, ty: f64) -> [f32; 3] {
    let (w, h) = (img.width(), img.height());
    let x = (tx.clamp(0.0, 1.0) * (w - 1) as f64) as f32;
    let y = (ty.clamp(0.0, 1.0) * (h - 1) as f64) as f32;
    let (x0, y0) = (x as u32, y as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |x, y| rgb(img.get_pixel(x, y).0);
    mix(
        mix(p(x0, y0), p(x1, y0), fx),
        mix(p(x0, y1), p(x1, y1), fx),
        fy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use crate::nav::world::style::CityStyle;

    /// The first face of each of the first `n` businesses, scaled to 24×24 (boards vary in size).
    fn faces(city: &City, n: usize, look: LandmarkLook) -> Vec<RgbImage> {
        let scene = Scene::new(city, look);
        city.places[..n]
            .iter()
            .map(|p| {
                let img = &scene.signs_by_lot[p.lot][0].image;
                image::imageops::resize(img, 24, 24, image::imageops::FilterType::Nearest)
            })
            .collect()
    }

    #[test]
    fn a_name_shows_the_same_logo_in_both_city_styles() {
        let n = 12;
        let nyc = City::generate(CityStyle::Nyc, CityStyle::Nyc.style(), &mut Rng::new(1));
        let ww = CityStyle::Worldwide;
        let mut worldwide = City::generate(ww, ww.style(), &mut Rng::new(1));
        // Give businesses of the other city the same names.
        for i in 0..n {
            worldwide.places[i].name = nyc.places[i].name.clone();
        }
        let (a, b) = (
            faces(&nyc, n, LandmarkLook::Logos),
            faces(&worldwide, n, LandmarkLook::Logos),
        );
        let signs = faces(&nyc, n, LandmarkLook::Signs);
        for i in 0..n {
            let name = &nyc.places[i].name;
            let color = logo_of(name).color;
            let ink = |img: &RgbImage| img.pixels().filter(|p| p.0 == color).count();
            assert!(ink(&a[i]) > 40, "{name}: {} logo pixels", ink(&a[i]));
            let agree = |x: &RgbImage, y: &RgbImage| {
                x.pixels().zip(y.pixels()).filter(|(p, q)| p == q).count()
            };
            assert!(
                agree(&a[i], &b[i]) > 24 * 24 * 9 / 10,
                "{name}: the cities disagree"
            );
            assert!(
                agree(&a[i], &signs[i]) < 24 * 24 / 2,
                "{name}: a logo is no sign"
            );
        }
    }
}
