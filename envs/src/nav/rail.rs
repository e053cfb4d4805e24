//! The expert rail (`gt_rail_info`): every position an episode can visit, with its ground-truth
//! action, observation and instruction sentence (paper-spec §2.4). The agent only ever moves
//! along the rail; a wrong action is not executed.

use super::error::NavError;
use super::geo::{LatLng, geodesic_m, interpolate};
use super::instruction::Instruction;
use super::panomap::PanoMap;
use super::route::Route;
use crate::Rng;

/// The observation of a position with nothing to report.
pub const NO_LANDMARKS: &str = "No landmarks nearby";
/// The intersection part of the oracle observation.
pub const AT_INTERSECTION: &str = "You observe an intersection";
/// The action that ends an episode.
pub const STOP: &str = "stop()";
/// The action between intersections.
pub const FORWARD: &str = "forward()";

/// One position on the rail.
#[derive(Clone, Debug, PartialEq)]
pub struct RailPoint {
    pub geocode: LatLng,
    /// The panorama the point was snapped to (with relocation).
    pub pano_id: Option<String>,
    /// The walker's heading here: the initial heading at the start, else the heading of the leg
    /// that led here.
    pub heading: f64,
    /// The expected action under the episode's rule (absolute or relative).
    pub gt_action: String,
    /// The landmark-only observation: the verifier's `gt_obs`.
    pub observation: String,
    /// Whether this is an intersection (or the destination).
    pub intersection: bool,
    /// The instruction sentence to execute here.
    pub instruction: String,
    /// Its 1-based number in the instruction.
    pub instruction_idx: usize,
}

impl RailPoint {
    /// The oracle text observation: `"{landmarks}; {intersection}"`, the intersection part
    /// blanked where the action is `stop()`.
    pub fn oracle_observation(&self) -> String {
        let inter = if self.intersection && self.gt_action != STOP {
            AT_INTERSECTION
        } else {
            ""
        };
        format!("{}; {inter}", self.observation)
    }
}

/// How the rail is laid (the reference's `env_config`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RailParams {
    /// Probability of dropping each interpolated point (`drop_rate`, 0.5).
    pub drop_rate: f64,
    /// Interpolated points per leg longer than 5 m (`straight_line_length`, 5).
    pub straight_line_length: u32,
    /// Absolute (`turn_direction(north)`, ID) or relative (`turn_direction(left)`, rule OOD) turns.
    pub absolute_action: bool,
}

/// Where a point of the route sits, for error messages.
fn point_name(idx: usize, n: usize) -> String {
    match idx {
        0 => "start (start_place.relocated_geocode)".to_string(),
        k if k == n => format!("destination (route_results.geocode_list[{}])", k - 1),
        k => format!("intersection {k} (route_results.geocode_list[{}])", k - 1),
    }
}

/// Lays the rail of `route` walked from `init_heading`. With `panos` (relocation), every point is
/// snapped to its panorama; an interpolated point that does not snap, or snaps within 8 m of either
/// end of its leg, is left out, while a start or intersection that does not snap is an error.
/// `rng` draws the dropped points, in the reference's order.
pub fn build_rail(
    route: &Route,
    ins: &Instruction,
    init_heading: f64,
    panos: Option<&PanoMap>,
    params: &RailParams,
    rng: &mut Rng,
) -> Result<Vec<RailPoint>, NavError> {
    let label = route.label();
    let snap = |p: LatLng, idx: usize| -> Result<(LatLng, Option<String>), NavError> {
        match panos {
            Some(m) => {
                let s = m.relocate_or_err(p, &label, &point_name(idx, route.geocode_list.len()))?;
                Ok((s.geocode, Some(s.pano_id.to_string())))
            }
            None => Ok((p, None)),
        }
    };
    let (start, mut start_pano) = snap(route.start, 0)?;
    let headings: Vec<f64> = std::iter::once(init_heading)
        .chain(route.milestones.iter().map(|m| m.heading as f64))
        .collect();
    let observation = |idx: usize| match idx {
        0 => NO_LANDMARKS.to_string(),
        k => route.milestones[k - 1].landmarks.clone(),
    };
    let n = params.straight_line_length;
    let mut rail = Vec::new();
    let mut prev = start;
    let mut instruction_idx = 0;
    let points = std::iter::once(start).chain(route.geocode_list.iter().copied());
    for (idx, raw) in points.enumerate() {
        let distance = geodesic_m(prev, raw);
        let (geocode, pano_id) = if idx == 0 {
            (start, start_pano.take())
        } else {
            snap(raw, idx)?
        };
        if distance > 5.0 {
            for i in 0..n {
                if rng.unit_f64() < params.drop_rate {
                    continue;
                }
                let p = interpolate(prev, geocode, i + 1, n);
                let (p, pano) = match panos {
                    Some(m) => match m.relocate(p) {
                        Some(s)
                            if geodesic_m(prev, s.geocode) > 8.0
                                && geodesic_m(geocode, s.geocode) > 8.0 =>
                        {
                            (s.geocode, Some(s.pano_id.to_string()))
                        }
                        _ => continue,
                    },
                    None => (p, None),
                };
                rail.push(RailPoint {
                    geocode: p,
                    pano_id: pano,
                    heading: headings[idx],
                    gt_action: FORWARD.into(),
                    observation: NO_LANDMARKS.into(),
                    intersection: false,
                    instruction: ins.sentences[instruction_idx].clone(),
                    instruction_idx: instruction_idx + 1,
                });
            }
            instruction_idx += 1;
        }
        let absolute = &ins.actions_absolute[idx];
        if absolute == STOP {
            // stop() shares the sentence of the last "Move forward …".
            instruction_idx -= 1;
        }
        let gt_action = if params.absolute_action {
            absolute
        } else {
            &ins.actions_relative[idx]
        };
        rail.push(RailPoint {
            geocode,
            pano_id,
            heading: headings[idx],
            gt_action: gt_action.clone(),
            observation: observation(idx),
            intersection: idx != 0,
            instruction: ins.sentences[instruction_idx].clone(),
            instruction_idx: instruction_idx + 1,
        });
        instruction_idx += 1;
        prev = geocode;
    }
    Ok(rail)
}
