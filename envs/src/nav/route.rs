//! Routes from a V-IRL `route_infos.json`: a JSON array `[routes, dest_idx]`, each route a dict
//! with `start_place`, `dest_place`, `route_results` (`geocode_list`, `landmark_list`, …),
//! `init_heading` and `milestone_info` (paper-spec §2.2). Only the fields the environment reads
//! are kept; each is checked, and an error names the route and the field.

use std::path::Path;

use serde_json::Value;

use super::error::NavError;
use super::geo::LatLng;
use super::milestone::{Milestone, parse_milestones};

/// One route, as the environment uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Position in the route file.
    pub index: usize,
    pub start_name: String,
    pub dest_name: String,
    /// `start_place.relocated_geocode`: where an episode starts.
    pub start: LatLng,
    /// `route_results.geocode_list`: the intersections, then the destination.
    pub geocode_list: Vec<LatLng>,
    /// `init_heading`; 0 (or absent) means "draw one at random".
    pub init_heading: f64,
    /// The parsed `milestone_info`, one per entry of `geocode_list`.
    pub milestones: Vec<Milestone>,
}

impl Route {
    /// A short name for messages: `route 3 (Start → Destination)`.
    pub fn label(&self) -> String {
        format!(
            "route {} ({} → {})",
            self.index, self.start_name, self.dest_name
        )
    }
}

/// Reads and checks `route_infos.json`.
pub fn load_routes(path: &Path) -> Result<Vec<Route>, NavError> {
    let text = std::fs::read_to_string(path).map_err(|e| NavError::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|source| NavError::Json {
        path: path.into(),
        source,
    })?;
    parse_routes(&value).map_err(|(route, field, problem)| NavError::Route {
        path: path.into(),
        route,
        field,
        problem,
    })
}

type FieldError = (String, String, String);

/// Reads routes from the parsed `[routes, dest_idx]` value.
pub fn parse_routes(value: &Value) -> Result<Vec<Route>, FieldError> {
    let file_err = |problem: &str| {
        (
            "the file".to_string(),
            "[0]".to_string(),
            problem.to_string(),
        )
    };
    let list = match value {
        Value::Array(items) if items.len() == 2 => items[0].as_array().ok_or_else(|| {
            file_err("expected the list of routes as element 0 of [routes, dest_idx]")
        })?,
        _ => return Err(file_err("expected a JSON array [routes, dest_idx]")),
    };
    if list.is_empty() {
        return Err(file_err("the route list is empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| parse_route(i, r))
        .collect()
}

/// Walks a route dict, remembering which route the errors belong to.
struct Fields<'a> {
    label: String,
    root: &'a Value,
}

impl<'a> Fields<'a> {
    fn err<T>(&self, field: &str, problem: impl Into<String>) -> Result<T, FieldError> {
        Err((self.label.clone(), field.to_string(), problem.into()))
    }

    fn get(&self, path: &str) -> Result<&'a Value, FieldError> {
        let mut v = self.root;
        for part in path.split('.') {
            v = match v.get(part) {
                Some(x) => x,
                None => return self.err(path, "missing"),
            };
        }
        Ok(v)
    }

    fn string(&self, path: &str) -> Result<&'a str, FieldError> {
        match self.get(path)? {
            Value::String(s) => Ok(s),
            other => self.err(path, format!("expected a string, found {}", kind(other))),
        }
    }

    fn point(&self, field: &str, v: &Value) -> Result<LatLng, FieldError> {
        let pair = v
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some(LatLng::new(a[0].as_f64()?, a[1].as_f64()?)));
        match pair {
            Some(p) if p.is_valid() => Ok(p),
            Some(p) => self.err(
                field,
                format!("coordinates ({}, {}) are out of range", p.lat, p.lng),
            ),
            None => self.err(
                field,
                format!("expected [lat, lng] numbers, found {}", kind(v)),
            ),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_route(index: usize, root: &Value) -> Result<Route, FieldError> {
    let names = |key: &str| {
        root.get(key)
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let (start_name, dest_name) = (names("start_place"), names("dest_place"));
    let f = Fields {
        label: format!("route {index} ({start_name} → {dest_name})"),
        root,
    };
    if !root.is_object() {
        return f.err("", format!("expected a route object, found {}", kind(root)));
    }
    f.string("start_place.name")?;
    f.string("dest_place.name")?;
    let start = f.point(
        "start_place.relocated_geocode",
        f.get("start_place.relocated_geocode")?,
    )?;
    let geocodes = match f.get("route_results.geocode_list")? {
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => return f.err("route_results.geocode_list", "empty"),
        other => {
            return f.err(
                "route_results.geocode_list",
                format!("expected an array, found {}", kind(other)),
            );
        }
    };
    let geocode_list = geocodes
        .iter()
        .enumerate()
        .map(|(i, g)| f.point(&format!("route_results.geocode_list[{i}]"), g))
        .collect::<Result<Vec<_>, _>>()?;
    let init_heading = match root.get("init_heading") {
        None => 0.0,
        Some(v) => match v.as_f64() {
            Some(h) => h,
            None => {
                return f.err(
                    "init_heading",
                    format!("expected a number, found {}", kind(v)),
                );
            }
        },
    };
    let milestones =
        parse_milestones(f.string("milestone_info")?).or_else(|e| f.err("milestone_info", e))?;
    if milestones.len() != geocode_list.len() {
        return f.err(
            "milestone_info",
            format!(
                "{} blocks for {} points in route_results.geocode_list (there must be one block per point)",
                milestones.len(),
                geocode_list.len()
            ),
        );
    }
    Ok(Route {
        index,
        start_name,
        dest_name,
        start,
        geocode_list,
        init_heading,
        milestones,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::nav::milestone::format_block;

    fn route() -> Value {
        json!({
            "start_place": {"name": "A", "geocode": [40.0, -74.0], "relocated_geocode": [40.0, -74.0]},
            "dest_place": {"name": "B", "geocode": [40.001, -74.0], "relocated_geocode": [40.001, -74.0]},
            "route_results": {"geocode_list": [[40.0005, -74.0], [40.001, -74.0]], "landmark_list": [null]},
            "init_heading": 0,
            "milestone_info": format_block(1, "X is on your left", 55, 0, 0, "north")
                + &format_block(2, "The destination B is on your right", 55, 0, 0, "north"),
        })
    }

    #[test]
    fn reads_a_route() {
        let r = &parse_routes(&json!([[route()], 1])).unwrap()[0];
        assert_eq!(r.label(), "route 0 (A → B)");
        assert_eq!(r.geocode_list.len(), 2);
        assert_eq!(r.milestones[0].landmarks, "X is on your left");
        assert_eq!(r.init_heading, 0.0);
    }

    #[test]
    fn errors_name_route_and_field() {
        let check = |v: Value, field: &str, problem: &str| {
            let (route, f, p) = parse_routes(&v).unwrap_err();
            assert_eq!(f, field, "{route}: {p}");
            assert!(p.contains(problem), "{p}");
        };
        check(json!({"a": 1}), "[0]", "[routes, dest_idx]");
        check(json!([[], 0]), "[0]", "empty");
        let mut r = route();
        r["route_results"]["geocode_list"][1] = json!([140.0, 0.0]);
        check(
            json!([[r], 1]),
            "route_results.geocode_list[1]",
            "out of range",
        );
        let mut r = route();
        r["start_place"]
            .as_object_mut()
            .unwrap()
            .remove("relocated_geocode");
        check(json!([[r], 1]), "start_place.relocated_geocode", "missing");
        let mut r = route();
        r["init_heading"] = json!("north");
        check(json!([[r], 1]), "init_heading", "expected a number");
        let mut r = route();
        r["milestone_info"] = json!(format_block(1, "X", 5, 0, 0, "north"));
        check(json!([[r], 1]), "milestone_info", "1 blocks for 2 points");
        let (route_label, _, _) = parse_routes(&json!([[route(), 7], 2])).unwrap_err();
        assert_eq!(route_label, "route 1 (? → ?)");
    }
}
