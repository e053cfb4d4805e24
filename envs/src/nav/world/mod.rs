//! Synthetic cities in the V-IRL data layout, so the real loader reads them: a street grid with
//! named businesses ([`city`]), routes with `milestone_info` ([`routes`]), the pickled
//! GPS-to-panorama mapping, and equirectangular street views rendered by the project
//! ([`render`]) in which every business shows its name on its storefront, or a logo
//! ([`logo`]). `world.json` records how the world was made.
//!
//! Only the panoramas some episode can visit are rendered and mapped: the snapped positions of
//! every route's rail with no point dropped.
//!
//! A world is determined by its [`WorldSpec`]: the city is
//! `City::generate(style, spec.look(), &mut Rng::derive(seed, 0))` and the routes are drawn from
//! `Rng::derive(seed, 1)`; the panorama width and the landmark look change only the images.

pub mod city;
pub mod logo;
pub mod render;
pub mod routes;
pub mod style;

use std::collections::BTreeSet;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use serde::Serialize;

use self::city::{Capture, City};
use self::logo::LandmarkLook;
use self::render::Scene;
use self::style::{CityStyle, Style};
use super::data::{MAPPING_FILE, ROUTE_FILE, STREET_VIEW_DIR};
use super::error::NavError;
use super::instruction::build_instruction;
use super::panomap::PanoMap;
use super::panorama::panorama_paths;
use super::pickle::write_mapping;
use super::rail::{RailParams, build_rail};
use super::route::parse_routes;
use crate::Rng;

/// JPEG quality of the panoramas.
const JPEG_QUALITY: u8 = 90;
/// The file describing how a world was made: its spec, city and landmark look.
pub const WORLD_FILE: &str = "world.json";

/// What to generate.
#[derive(Clone, Debug)]
pub struct WorldSpec {
    pub style: CityStyle,
    pub routes: usize,
    pub seed: u64,
    /// Panorama width in pixels (the height is half).
    pub pano_width: u32,
    /// How businesses show who they are: name signs, or logos for tiny models.
    pub landmarks: LandmarkLook,
    /// The style whose business names the city uses, when not its own: a city of one look with
    /// the other's businesses (chains found in both), so a model that knows the names meets
    /// them in streets it has never seen.
    pub names: Option<CityStyle>,
    /// The compass heading of the avenues in degrees, in place of the style's (`nyc`: 29°,
    /// `worldwide`: drawn). Streets run at right angles to them, so the heading decides which
    /// four of the eight compass words the routes use.
    pub grid_heading: Option<f64>,
}

impl WorldSpec {
    /// Checks the values a user gives: at least one route, an even panorama width in
    /// [256, 8192], a grid heading in [0, 360).
    pub fn validate(&self) -> Result<(), String> {
        if self.routes == 0 {
            return Err("ask for at least one route".into());
        }
        if !(256..=8192).contains(&self.pano_width) || !self.pano_width.is_multiple_of(2) {
            return Err(format!(
                "panorama width must be even and in [256, 8192], got {}",
                self.pano_width
            ));
        }
        if let Some(h) = self.grid_heading
            && !(0.0..360.0).contains(&h)
        {
            return Err(format!("grid heading must be in [0, 360) degrees, got {h}"));
        }
        Ok(())
    }

    /// The city parameters: the style's, with the spec's names and grid heading.
    pub fn look(&self) -> Style {
        let own = self.style.style();
        let naming = self.names.unwrap_or(self.style).style();
        Style {
            name_words: naming.name_words,
            kinds: naming.kinds,
            kind_first: naming.kind_first,
            grid_heading: self.grid_heading.or(own.grid_heading),
            ..own
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct WorldSummary {
    pub dir: PathBuf,
    pub city: String,
    pub routes: usize,
    pub places: usize,
    pub panoramas: usize,
    /// How businesses show themselves: `signs` or `logos`.
    pub landmarks: &'static str,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NavError + '_ {
    move |e| NavError::io(path, e)
}

/// Generates a city and its routes and writes them to `out` in the V-IRL layout. The city and
/// routes do not depend on `spec.landmarks` or `spec.pano_width`, only the street views do.
pub fn generate(spec: &WorldSpec, out: &Path) -> Result<WorldSummary, NavError> {
    spec.validate().map_err(NavError::Invalid)?;
    let landmarks = spec.landmarks;
    let names = spec.names.unwrap_or(spec.style);
    let city = City::generate(spec.style, spec.look(), &mut Rng::derive(spec.seed, 0));
    let routes_value = routes::generate_routes(&city, spec.routes, &mut Rng::derive(spec.seed, 1))?;
    let routes = parse_routes(&routes_value).map_err(|(r, f, p)| {
        NavError::Invalid(format!("generated {r} does not load: field `{f}`: {p}"))
    })?;

    // The panoramas any episode can reach: every rail point of every route, none dropped.
    let all = PanoMap::new(
        city.captures
            .iter()
            .map(|c| ((c.geocode.lat, c.geocode.lng), c.pano_id.clone()))
            .collect(),
    );
    let params = RailParams {
        drop_rate: 0.0,
        straight_line_length: 5,
        absolute_action: true,
    };
    let mut needed = BTreeSet::new();
    for route in &routes {
        let ins = build_instruction(&route.milestones, 0.0, false);
        for p in build_rail(route, &ins, 0.0, Some(&all), &params, &mut Rng::new(0))? {
            needed.extend(p.pano_id);
        }
    }
    let captures: Vec<&Capture> = city
        .captures
        .iter()
        .filter(|c| needed.contains(&c.pano_id))
        .collect();

    let views = out.join(STREET_VIEW_DIR);
    fs::create_dir_all(&views).map_err(io(&views))?;
    let route_path = out.join(ROUTE_FILE);
    let text = serde_json::to_string_pretty(&routes_value)
        .map_err(|e| NavError::Invalid(e.to_string()))?;
    fs::write(&route_path, text).map_err(io(&route_path))?;
    let mapping: Vec<_> = captures
        .iter()
        .map(|c| ((c.geocode.lat, c.geocode.lng), c.pano_id.clone()))
        .collect();
    let map_path = out.join(MAPPING_FILE);
    fs::write(&map_path, write_mapping(&mapping)).map_err(io(&map_path))?;

    let scene = Scene::new(&city, landmarks);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(captures.len().max(1));
    let chunk = captures.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = captures
            .chunks(chunk)
            .map(|part| {
                let (scene, views, width) = (&scene, &views, spec.pano_width);
                s.spawn(move || {
                    part.iter()
                        .try_for_each(|c| write_panorama(scene, c, views, width))
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })?;
    let world_path = out.join(WORLD_FILE);
    let world = serde_json::json!({
        "style": spec.style.name(),
        "names": names.name(),
        "grid_heading": city.frame.grid_heading,
        "city": city.name,
        "routes": routes.len(),
        "seed": spec.seed,
        "pano_width": spec.pano_width,
        "landmarks": landmarks.name(),
        "source": "sftvsrl synthetic world",
    });
    fs::write(&world_path, format!("{world:#}\n")).map_err(io(&world_path))?;
    Ok(WorldSummary {
        dir: out.to_path_buf(),
        city: city.name.clone(),
        routes: routes.len(),
        places: city.places.len(),
        panoramas: captures.len(),
        landmarks: landmarks.name(),
    })
}

/// Renders one capture and writes its JPEG and metadata.
fn write_panorama(
    scene: &Scene,
    capture: &Capture,
    dir: &Path,
    width: u32,
) -> Result<(), NavError> {
    let img = scene.render(capture, width);
    let (jpg, meta) = panorama_paths(dir, &capture.pano_id);
    let file = fs::File::create(&jpg).map_err(io(&jpg))?;
    JpegEncoder::new_with_quality(BufWriter::new(file), JPEG_QUALITY)
        .encode_image(&img)
        .map_err(|source| NavError::Image {
            path: jpg.clone(),
            source,
        })?;
    let metadata = serde_json::json!({
        "pano_id": capture.pano_id,
        "lat": capture.geocode.lat,
        "lng": capture.geocode.lng,
        "rotation": capture.rotation,
        "source": "sftvsrl synthetic world",
    });
    fs::write(&meta, metadata.to_string()).map_err(io(&meta))
}
