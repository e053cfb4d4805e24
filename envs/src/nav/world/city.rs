//! The layout of a synthetic city: a rotated street grid (avenues along the grid's v axis,
//! streets along its u axis), blocks cut into building lots, named businesses with storefront
//! signs, and street-view capture points every ~10 m along every street centreline.
//!
//! Geometry lives in a local "grid frame" in metres: `u` points 90° clockwise of the avenues'
//! compass heading, `v` along the avenues. [`Frame`] converts to compass headings and lat/lng.

use std::collections::{BTreeMap, HashSet};

use super::style::{CityStyle, Rgb, Style};
use crate::Rng;
use crate::nav::geo::{EARTH_RADIUS_M, LatLng};

/// Spacing of street-view capture points along a street, in metres.
const CAPTURE_SPACING_M: f64 = 10.0;

/// An intersection: `(avenue index, street index)`.
pub type Node = (usize, usize);

/// The grid frame: its origin on the globe and the compass heading of its v axis.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub origin: LatLng,
    pub grid_heading: f64,
}

impl Frame {
    /// Grid (u, v) → east/north metres.
    fn enu(self, u: f64, v: f64) -> (f64, f64) {
        let (s, c) = self.grid_heading.to_radians().sin_cos();
        (u * c + v * s, -u * s + v * c)
    }

    /// Grid (u, v) → latitude/longitude (local equirectangular projection).
    pub fn to_latlng(&self, u: f64, v: f64) -> LatLng {
        let (x, y) = self.enu(u, v);
        LatLng::new(
            self.origin.lat + (y / EARTH_RADIUS_M).to_degrees(),
            self.origin.lng
                + (x / (EARTH_RADIUS_M * self.origin.lat.to_radians().cos())).to_degrees(),
        )
    }

    /// The grid-frame unit vector of a compass heading.
    pub fn direction(&self, heading: f64) -> (f64, f64) {
        let (x, y) = (heading.to_radians().sin(), heading.to_radians().cos());
        let (s, c) = self.grid_heading.to_radians().sin_cos();
        (x * c - y * s, x * s + y * c)
    }
}

/// Which wall of a lot: the one at its low/high u, or low/high v.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    U0,
    U1,
    V0,
    V1,
}

/// A storefront sign on one wall: its extent along the wall (`from` → `to` in reading order, as
/// seen from the street) and its bottom and top heights.
#[derive(Clone, Copy, Debug)]
pub struct Sign {
    pub side: Side,
    pub from: f64,
    pub to: f64,
    pub bottom: f64,
    pub top: f64,
}

/// A building on a rectangular lot.
#[derive(Clone, Debug)]
pub struct Lot {
    pub u0: f64,
    pub u1: f64,
    pub v0: f64,
    pub v1: f64,
    pub height: f64,
    pub wall: Rgb,
    pub floor_height: f64,
    pub window_pitch: f64,
    /// The business in it, if any.
    pub place: Option<usize>,
}

/// A named business: its signs, and its geocode at the foot of its main sign.
#[derive(Clone, Debug)]
pub struct Place {
    pub name: String,
    pub place_type: &'static str,
    pub lot: usize,
    pub signs: Vec<Sign>,
    pub sign_colors: (Rgb, Rgb),
    pub geocode: LatLng,
    pub rating: f64,
    pub n_reviews: u32,
    pub address: String,
    pub place_id: String,
    /// The index of the street its main sign faces.
    pub street: usize,
}

/// A street-view capture point.
#[derive(Clone, Debug)]
pub struct Capture {
    pub uv: (f64, f64),
    pub geocode: LatLng,
    pub pano_id: String,
    /// North rotation written to the metadata.
    pub rotation: f64,
    /// The intersections at the ends of its street segment (both the same node for a capture at
    /// an intersection).
    pub ends: (Node, Node),
}

/// A whole synthetic city.
pub struct City {
    pub style: CityStyle,
    pub look: Style,
    pub name: String,
    pub frame: Frame,
    /// u of each avenue, v of each street, including the outer ring without street views.
    pub avenues: Vec<f64>,
    pub streets: Vec<f64>,
    pub avenue_names: Vec<String>,
    pub street_names: Vec<String>,
    pub lots: Vec<Lot>,
    pub places: Vec<Place>,
    pub captures: Vec<Capture>,
}

/// Random characters in the alphabet of Google panorama and place ids.
pub fn random_id(rng: &mut Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    (0..len).map(|_| *rng.choose(ALPHABET) as char).collect()
}

fn uniform(rng: &mut Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.unit_f64()
}

/// Sign letter height in metres.
pub const LETTER_M: f64 = 1.0;
/// Advance of one monospace letter, in letter heights.
pub const LETTER_ADVANCE: f64 = 0.6;

impl City {
    /// Lays out a city of `style` with the parameters `look` (usually `style.style()`), fully
    /// determined by `rng`.
    pub fn generate(style: CityStyle, look: Style, rng: &mut Rng) -> City {
        let &(city_name, lat, lng) = rng.choose(look.cities);
        let grid_heading = look
            .grid_heading
            .unwrap_or_else(|| uniform(rng, (0.0, 90.0)));
        let frame = Frame {
            origin: LatLng::new(lat, lng),
            grid_heading,
        };
        let lines = |rng: &mut Rng, n: usize, gap: (f64, f64)| {
            let mut at = vec![0.0];
            for _ in 1..n {
                let next = at[at.len() - 1] + uniform(rng, gap);
                at.push(next);
            }
            at
        };
        // One more line on each side carries a ring of buildings around the streets that have
        // street views, so no view looks out over empty land.
        let avenues = lines(rng, look.avenues + 2, look.avenue_gap);
        let streets = lines(rng, look.streets + 2, look.street_gap);
        let pick_names = |rng: &mut Rng, pool: &[&str], n: usize| {
            let mut names: Vec<String> = pool.iter().map(|s| s.to_string()).collect();
            rng.shuffle(&mut names);
            names.truncate(n);
            names
        };
        let avenue_names = pick_names(rng, look.avenue_names, avenues.len());
        let street_names = pick_names(rng, look.street_names, streets.len());
        let mut city = City {
            style,
            look,
            name: city_name.to_string(),
            frame,
            avenues,
            streets,
            avenue_names,
            street_names,
            lots: Vec::new(),
            places: Vec::new(),
            captures: Vec::new(),
        };
        city.build_lots(rng);
        city.build_captures(rng);
        city
    }

    fn build_lots(&mut self, rng: &mut Rng) {
        let look = &self.look;
        let (ha, hs, sw) = (look.avenue_half_road, look.street_half_road, look.sidewalk);
        let mut names = HashSet::new();
        for i in 0..self.avenues.len() - 1 {
            for j in 0..self.streets.len() - 1 {
                let (bu0, bu1) = (self.avenues[i] + ha + sw, self.avenues[i + 1] - ha - sw);
                let (bv0, bv1) = (self.streets[j] + hs + sw, self.streets[j + 1] - hs - sw);
                let vmid = (bv0 + bv1) / 2.0;
                for (v0, v1, front, street) in
                    [(bv0, vmid, Side::V0, j), (vmid, bv1, Side::V1, j + 1)]
                {
                    let mut u = bu0;
                    while u < bu1 - 1.0 {
                        let w = uniform(rng, look.lot_width);
                        let (u0, u1) = (
                            u,
                            if bu1 - (u + w) < look.lot_width.0 {
                                bu1
                            } else {
                                u + w
                            },
                        );
                        u = u1;
                        let (first, last) = (u0 == bu0, u1 == bu1);
                        let lot = Lot {
                            u0,
                            u1,
                            v0,
                            v1,
                            height: uniform(rng, look.heights),
                            wall: *rng.choose(look.palette.walls),
                            floor_height: uniform(rng, (3.0, 3.8)),
                            window_pitch: uniform(rng, (2.2, 3.4)),
                            place: None,
                        };
                        self.lots.push(lot);
                        let corner = first || last;
                        if rng.chance(if corner { 0.8 } else { 0.45 }) {
                            let lot_idx = self.lots.len() - 1;
                            let avenue_side = if first {
                                Some((Side::U0, i))
                            } else if last {
                                Some((Side::U1, i + 1))
                            } else {
                                None
                            };
                            if let Some(place) =
                                self.new_place(rng, &mut names, lot_idx, front, street, avenue_side)
                            {
                                self.lots[lot_idx].place = Some(self.places.len());
                                self.places.push(place);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A business in lot `lot_idx` with its main sign on the `front` wall (facing street
    /// `street`) and, on a corner lot, a second sign on the avenue wall.
    fn new_place(
        &self,
        rng: &mut Rng,
        names: &mut HashSet<String>,
        lot_idx: usize,
        front: Side,
        street: usize,
        avenue_side: Option<(Side, usize)>,
    ) -> Option<Place> {
        let look = &self.look;
        let lot = &self.lots[lot_idx];
        let (name, place_type) = (0..20).find_map(|_| {
            let word = *rng.choose(look.name_words);
            let &(kind, place_type) = rng.choose(look.kinds);
            let name = if look.kind_first {
                format!("{kind} {word}")
            } else {
                format!("{word} {kind}")
            };
            names.insert(name.clone()).then_some((name, place_type))
        })?;
        let sign_len = (name.len() as f64 * LETTER_ADVANCE + 0.8) * LETTER_M;
        let (bottom, top) = (3.3, 3.3 + LETTER_M * 1.5);
        // Along-wall extents in reading order; corner signs sit near the corner.
        let front_span = {
            let (lo, hi) = (lot.u0 + 0.5, lot.u1 - 0.5);
            let len = sign_len.min(hi - lo);
            let start = match avenue_side {
                Some((Side::U0, _)) => lo + 1.0_f64.min(hi - lo - len),
                Some(_) => hi - len - 1.0_f64.min(hi - lo - len),
                None => (lo + hi - len) / 2.0,
            };
            // Seen from the street, text runs along +u on a V0 wall and along -u on a V1 wall.
            if front == Side::V0 {
                (start, start + len)
            } else {
                (start + len, start)
            }
        };
        let mut signs = vec![Sign {
            side: front,
            from: front_span.0,
            to: front_span.1,
            bottom,
            top,
        }];
        if let Some((side, _)) = avenue_side {
            let (lo, hi) = (lot.v0 + 0.5, lot.v1 - 0.5);
            let len = sign_len.min(hi - lo);
            let start = if front == Side::V0 {
                lo + 1.0_f64.min(hi - lo - len)
            } else {
                hi - len - 1.0_f64.min(hi - lo - len)
            };
            // On a U0 wall text runs along -v; on a U1 wall along +v.
            let span = if side == Side::U0 {
                (start + len, start)
            } else {
                (start, start + len)
            };
            signs.push(Sign {
                side,
                from: span.0,
                to: span.1,
                bottom,
                top,
            });
        }
        let u = (front_span.0 + front_span.1) / 2.0;
        let v = if front == Side::V0 { lot.v0 } else { lot.v1 };
        let number =
            2 * ((u - self.avenues[0]).max(0.0) as u32 / 4) + 1 + u32::from(front == Side::V1);
        Some(Place {
            name,
            place_type,
            lot: lot_idx,
            signs,
            sign_colors: *rng.choose(look.palette.signs),
            geocode: self.frame.to_latlng(u, v),
            rating: (35.0 + rng.below(15) as f64) / 10.0,
            n_reviews: (10.0 * 400f64.powf(rng.unit_f64())) as u32 + rng.below(10) as u32,
            address: format!("{number} {}, {}", self.street_names[street], self.name),
            place_id: format!("ChIJ{}", random_id(rng, 23)),
            street,
        })
    }

    fn build_captures(&mut self, rng: &mut Rng) {
        let (na, ns) = (self.avenues.len(), self.streets.len());
        // Every capture point with its segment's end nodes and the street's heading, keyed by
        // its grid position in centimetres so that intersections are shared.
        type Spot = ((f64, f64), (Node, Node), f64);
        let mut points: BTreeMap<(i64, i64), Spot> = BTreeMap::new();
        let mut segment = |from: Node, to: Node, heading: f64| {
            let (a, b) = (
                (self.avenues[from.0], self.streets[from.1]),
                (self.avenues[to.0], self.streets[to.1]),
            );
            let n = (((b.0 - a.0) + (b.1 - a.1)) / CAPTURE_SPACING_M)
                .round()
                .max(1.0) as usize;
            for k in 0..=n {
                let t = k as f64 / n as f64;
                let (u, v) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                let ends = match k {
                    0 => (from, from),
                    k if k == n => (to, to),
                    _ => (from, to),
                };
                let key = ((u * 100.0).round() as i64, (v * 100.0).round() as i64);
                points.entry(key).or_insert(((u, v), ends, heading));
            }
        };
        let h = self.frame.grid_heading;
        for i in 1..na - 1 {
            for j in 1..ns - 2 {
                segment((i, j), (i, j + 1), h);
            }
        }
        for j in 1..ns - 1 {
            for i in 1..na - 2 {
                segment((i, j), (i + 1, j), h + 90.0);
            }
        }
        self.captures = points
            .into_values()
            .map(|((u, v), ends, street_heading)| {
                // The capture car drove one way or the other along the street; the panorama's
                // centre column faces its direction of travel.
                let travel = street_heading
                    + if rng.chance(0.5) { 0.0 } else { 180.0 }
                    + uniform(rng, (-4.0, 4.0));
                Capture {
                    uv: (u, v),
                    geocode: self.frame.to_latlng(u, v),
                    pano_id: random_id(rng, 22),
                    rotation: crate::nav::geo::py_mod(180.0 - travel, 360.0),
                    ends,
                }
            })
            .collect();
    }
}
