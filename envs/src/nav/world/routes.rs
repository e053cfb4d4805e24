//! Routes through a synthetic city, written like V-IRL's `collect_vln_routes.py` writes them:
//! start and destination businesses whose street views lie within 20 m, the shortest walking path
//! along the grid with one or two turns, the most-reviewed business within reach of each turn as
//! its landmark, and `milestone_info` in V-IRL's template.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::city::{Capture, City, Place};
use crate::Rng;
use crate::nav::error::NavError;
use crate::nav::geo::{LatLng, bearing_deg, compass_word, haversine_m, spatial_relation};
use crate::nav::milestone::{NO_LANDMARK, format_block};
use crate::nav::panomap::MAPPING_RADIUS_M;

/// Turns per route (V-IRL's MIN_INTERSECT 1 and MAX_INTERSECT 3, exclusive).
const TURNS: std::ops::RangeInclusive<usize> = 1..=2;
/// Straight-line distance between start and destination, in metres.
const START_DISTANCE_M: (f64, f64) = (60.0, 320.0);
/// Longest walk, in metres.
const MAX_ROUTE_M: f64 = 450.0;
/// Fewest reviews a landmark needs (V-IRL's MIN_REVIEWS).
const MIN_REVIEWS: u32 = 10;

type Uv = (f64, f64);

fn node_uv(city: &City, (i, j): (usize, usize)) -> Uv {
    (city.avenues[i], city.streets[j])
}

fn dist(a: Uv, b: Uv) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Drops repeated points and straight-through points; `None` if the path doubles back.
fn simplify(points: &[Uv]) -> Option<Vec<Uv>> {
    let mut pts: Vec<Uv> = Vec::with_capacity(points.len());
    for &p in points {
        if pts.last().is_none_or(|&q| dist(p, q) > 1e-6) {
            pts.push(p);
        }
    }
    let mut out: Vec<Uv> = vec![pts[0]];
    for k in 1..pts.len() {
        if k + 1 < pts.len() {
            let (a, b, c) = (out[out.len() - 1], pts[k], pts[k + 1]);
            let (d1, d2) = ((b.0 - a.0, b.1 - a.1), (c.0 - b.0, c.1 - b.1));
            let (cross, dot) = (d1.0 * d2.1 - d1.1 * d2.0, d1.0 * d2.0 + d1.1 * d2.1);
            if cross.abs() < 1e-6 * dist(a, b) * dist(b, c) {
                if dot < 0.0 {
                    return None;
                }
                continue;
            }
        }
        out.push(pts[k]);
    }
    Some(out)
}

/// The shortest grid path from capture `s` to capture `d` with an allowed number of turns.
fn shortest_path(city: &City, s: &Capture, d: &Capture) -> Option<Vec<Uv>> {
    let mut best: Option<(f64, Vec<Uv>)> = None;
    for a in [s.ends.0, s.ends.1] {
        for c in [d.ends.0, d.ends.1] {
            let corners: Vec<Option<(usize, usize)>> = if a.0 == c.0 || a.1 == c.1 {
                vec![None]
            } else {
                vec![Some((c.0, a.1)), Some((a.0, c.1))]
            };
            for corner in corners {
                let mut pts = vec![s.uv, node_uv(city, a)];
                pts.extend(corner.map(|n| node_uv(city, n)));
                pts.extend([node_uv(city, c), d.uv]);
                let Some(path) = simplify(&pts) else { continue };
                let len: f64 = path.windows(2).map(|w| dist(w[0], w[1])).sum();
                if TURNS.contains(&(path.len().saturating_sub(2)))
                    && len <= MAX_ROUTE_M
                    && best.as_ref().is_none_or(|b| len < b.0 - 1e-9)
                {
                    best = Some((len, path));
                }
            }
        }
    }
    best.map(|b| b.1)
}

/// The capture a point relocates to (nearest within 20 m), as V-IRL's collection does.
fn relocate(city: &City, p: LatLng) -> Option<&Capture> {
    city.captures
        .iter()
        .map(|c| (haversine_m(p, c.geocode), c))
        .filter(|(d, _)| *d < MAPPING_RADIUS_M)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn place_json(city: &City, p: &Place, extra: Value) -> Value {
    let mut v = json!({
        "name": p.name,
        "geocode": [p.geocode.lat, p.geocode.lng],
        "rating": p.rating,
        "place_id": p.place_id,
        "n_reviews": p.n_reviews,
        "place_types": [p.place_type, "point_of_interest", "establishment"],
        "vicinity": p.address,
        "region": format!("{}_{}", city.name.replace(' ', "_"), city.style.name()),
    });
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

/// Google's encoded polyline of a leg.
fn encode_polyline(points: &[LatLng]) -> String {
    let mut out = String::new();
    let (mut plat, mut plng) = (0i64, 0i64);
    for p in points {
        let (lat, lng) = ((p.lat * 1e5).round() as i64, (p.lng * 1e5).round() as i64);
        for delta in [lat - plat, lng - plng] {
            let mut v = if delta < 0 { !(delta << 1) } else { delta << 1 } as u64;
            while v >= 0x20 {
                out.push(char::from((0x20 | (v & 0x1f)) as u8 + 63));
                v >>= 5;
            }
            out.push(char::from(v as u8 + 63));
        }
        (plat, plng) = (lat, lng);
    }
    out
}

/// The name of the street a grid leg runs along.
fn street_of(city: &City, a: Uv, b: Uv) -> &str {
    let nearest = |lines: &[f64], x: f64| {
        (0..lines.len())
            .min_by(|&i, &j| (lines[i] - x).abs().total_cmp(&(lines[j] - x).abs()))
            .unwrap_or(0)
    };
    if (a.0 - b.0).abs() < (a.1 - b.1).abs() {
        &city.avenue_names[nearest(&city.avenues, a.0)]
    } else {
        &city.street_names[nearest(&city.streets, a.1)]
    }
}

/// One route as V-IRL writes it, or `None` if this start/destination pair has no valid path.
fn route_json(city: &City, start: &Place, dest: &Place) -> Option<Value> {
    let (s, d) = (
        relocate(city, start.geocode)?,
        relocate(city, dest.geocode)?,
    );
    let path = shortest_path(city, s, d)?;
    let geo: Vec<LatLng> = path
        .iter()
        .map(|&(u, v)| city.frame.to_latlng(u, v))
        .collect();
    // The start and the destination are exact capture points; turns are intersections.
    let (mut blocks, mut landmarks, mut instructions, mut free_text) =
        (String::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut distances, mut times) = (Vec::new(), Vec::new());
    let mut agent_heading = 0.0;
    let legs = geo.len() - 1;
    for k in 0..legs {
        let (from, to) = (geo[k], geo[k + 1]);
        let heading = bearing_deg(from, to);
        let word = compass_word((heading as i64) as f64);
        let meters = haversine_m(from, to).round() as i64;
        distances.push(meters);
        times.push((meters as f64 / 1.3).round() as i64);
        let street = street_of(city, path[k], path[k + 1]);
        let expression = if k + 1 == legs {
            let rel = spatial_relation(heading, bearing_deg(to, dest.geocode));
            free_text.push(format!(
                "Walk {word} on {street} until you find {} on your {rel}.",
                dest.name
            ));
            format!("The destination {} is on your {rel}", dest.name)
        } else {
            let landmark = city
                .places
                .iter()
                .map(|p| (haversine_m(to, p.geocode), p))
                .filter(|(dd, p)| *dd <= city.look.landmark_radius && p.n_reviews >= MIN_REVIEWS)
                .fold(None::<(f64, &Place)>, |best, x| match best {
                    Some(b) if b.1.n_reviews >= x.1.n_reviews => Some(b),
                    _ => Some(x),
                });
            let text = match landmark {
                Some((dd, p)) => {
                    let toward = bearing_deg(to, p.geocode);
                    let rel = spatial_relation(heading, toward);
                    let expression = format!("{} is on your {rel}", p.name);
                    let extra = json!({"distance": dd, "heading": toward, "spatial_relation": rel, "expression": expression});
                    landmarks.push(place_json(city, p, extra));
                    expression
                }
                None => {
                    landmarks.push(Value::Null);
                    NO_LANDMARK.to_string()
                }
            };
            free_text.push(format!(
                "Walk {word} on {street} to the next intersection ({text})."
            ));
            text
        };
        instructions.push(if k == 0 {
            format!("Head <b>{word}</b> on <b>{street}</b>")
        } else {
            let (d1, d2) = (
                (path[k].0 - path[k - 1].0, path[k].1 - path[k - 1].1),
                (path[k + 1].0 - path[k].0, path[k + 1].1 - path[k].1),
            );
            let side = if d1.0 * d2.1 - d1.1 * d2.0 < 0.0 {
                "right"
            } else {
                "left"
            };
            format!("Turn <b>{side}</b> onto <b>{street}</b>")
        });
        blocks.push_str(&format_block(
            k + 1,
            &expression,
            meters,
            agent_heading as i64,
            heading as i64,
            word,
        ));
        agent_heading = heading;
    }
    let straight = haversine_m(start.geocode, dest.geocode);
    let relocated = |c: &Capture| json!([c.geocode.lat, c.geocode.lng]);
    Some(json!({
        "dest_place": place_json(city, dest, json!({"distance": straight, "relocated_geocode": relocated(d)})),
        "start_place": place_json(city, start, json!({"distance": straight, "relocated_geocode": relocated(s)})),
        "route_results": {
            "geocode_list": geo[1..].iter().map(|p| json!([p.lat, p.lng])).collect::<Vec<_>>(),
            "polyline": geo.windows(2).map(encode_polyline).collect::<Vec<_>>(),
            "instructions": instructions,
            "distance_list": distances,
            "time_list": times,
            "time": times.iter().sum::<i64>(),
            "distance": distances.iter().sum::<i64>(),
            "n_landmarks": landmarks.iter().filter(|l| !l.is_null()).count(),
            "landmark_list": landmarks,
        },
        "init_heading": 0,
        "instruction": free_text.join("\n"),
        "milestone_info": blocks,
    }))
}

/// `n` distinct routes through `city`, as the `[routes, dest_idx]` value of `route_infos.json`.
pub fn generate_routes(city: &City, n: usize, rng: &mut Rng) -> Result<Value, NavError> {
    let mut routes = Vec::with_capacity(n);
    let mut used = HashSet::new();
    let mut tries = 0usize;
    while routes.len() < n {
        tries += 1;
        if tries > 200 * n + 1000 {
            return Err(NavError::Invalid(format!(
                "found only {} distinct routes in this {} city; ask for fewer",
                routes.len(),
                city.style.name()
            )));
        }
        let d = rng.below(city.places.len() as u64) as usize;
        let s = rng.below(city.places.len() as u64) as usize;
        let gap = haversine_m(city.places[s].geocode, city.places[d].geocode);
        if s == d
            || !(START_DISTANCE_M.0..=START_DISTANCE_M.1).contains(&gap)
            || used.contains(&(s, d))
        {
            continue;
        }
        if let Some(route) = route_json(city, &city.places[s], &city.places[d]) {
            used.insert((s, d));
            routes.push(route);
        }
    }
    Ok(json!([routes, tries]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polyline_matches_googles_example() {
        // The worked example of Google's encoded polyline documentation.
        let pts = [
            LatLng::new(38.5, -120.2),
            LatLng::new(40.7, -120.95),
            LatLng::new(43.252, -126.453),
        ];
        assert_eq!(encode_polyline(&pts), "_p~iF~ps|U_ulLnnqC_mqNvxq`@");
    }

    #[test]
    fn simplify_merges_straight_runs_and_rejects_reversals() {
        assert_eq!(
            simplify(&[(0.0, 0.0), (0.0, 5.0), (0.0, 10.0), (4.0, 10.0)]),
            Some(vec![(0.0, 0.0), (0.0, 10.0), (4.0, 10.0)])
        );
        assert_eq!(
            simplify(&[(0.0, 0.0), (0.0, 0.0), (0.0, 10.0)]),
            Some(vec![(0.0, 0.0), (0.0, 10.0)])
        );
        assert_eq!(simplify(&[(0.0, 5.0), (0.0, 0.0), (0.0, 10.0)]), None);
    }
}
