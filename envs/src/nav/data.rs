//! A route folder in the V-IRL layout, loaded and checked once:
//!
//! ```text
//! DIR/route_infos.json        [routes, dest_idx]
//! DIR/gps_pano_mapping.pkl    pickled dict[(lat, lng) -> pano_id]
//! DIR/street_views/<pano>.jpg and <pano>.metadata.json
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::NavConfig;
use super::episode::pano_for_point;
use super::error::NavError;
use super::instruction::build_instruction;
use super::panomap::PanoMap;
use super::panorama::check_panorama;
use super::rail::{RailParams, build_rail};
use super::route::{Route, load_routes};
use crate::Rng;

/// File names inside a route folder.
pub const ROUTE_FILE: &str = "route_infos.json";
pub const MAPPING_FILE: &str = "gps_pano_mapping.pkl";
pub const STREET_VIEW_DIR: &str = "street_views";

/// Routes, and (when needed) the panorama mapping of one route folder.
#[derive(Clone, Debug)]
pub struct NavData {
    pub dir: PathBuf,
    pub routes: Vec<Route>,
    pub panos: Option<PanoMap>,
    /// Whether every panorama an episode can reach was checked (loaded for vision).
    pub views_checked: bool,
}

impl NavData {
    /// Loads a route folder for `config`: the mapping is read when the config relocates or
    /// renders, and every point an episode could visit is checked up front (it snaps to a
    /// panorama; with vision, that panorama's image and metadata are readable).
    pub fn load(dir: &Path, config: &NavConfig) -> Result<Self, NavError> {
        config.validate().map_err(NavError::Invalid)?;
        let routes = load_routes(&dir.join(ROUTE_FILE))?;
        let panos = if config.relocation || config.vision {
            Some(PanoMap::load(&dir.join(MAPPING_FILE))?)
        } else {
            None
        };
        let data = NavData {
            dir: dir.to_path_buf(),
            routes,
            panos,
            views_checked: config.vision,
        };
        data.check(config).map_err(|e| match e {
            // The mapping is what lacks the panorama: name it.
            NavError::NoPanorama { .. } => {
                NavError::Invalid(format!("{}: {e}", dir.join(MAPPING_FILE).display()))
            }
            other => other,
        })?;
        Ok(data)
    }

    /// The folder of panorama images.
    pub fn street_views(&self) -> PathBuf {
        self.dir.join(STREET_VIEW_DIR)
    }

    fn check(&self, config: &NavConfig) -> Result<(), NavError> {
        let params = RailParams {
            drop_rate: 0.0,
            ..config.rail_params()
        };
        let relocation = if config.relocation {
            self.panos.as_ref()
        } else {
            None
        };
        let mut needed = BTreeMap::new();
        for route in &self.routes {
            // No point is dropped, so this rail holds every position any episode can visit.
            let ins = build_instruction(&route.milestones, route.init_heading, false);
            let rail = build_rail(
                route,
                &ins,
                route.init_heading,
                relocation,
                &params,
                &mut Rng::new(0),
            )?;
            if config.vision {
                for (k, p) in rail.iter().enumerate() {
                    let id = pano_for_point(self, route, p, k)?;
                    needed
                        .entry(id)
                        .or_insert_with(|| format!("{}, rail point {k}", route.label()));
                }
            }
        }
        let dir = self.street_views();
        for (id, user) in &needed {
            check_panorama(&dir, id).map_err(|e| match e {
                NavError::Panorama {
                    path,
                    pano_id,
                    problem,
                } => NavError::Panorama {
                    path,
                    pano_id,
                    problem: format!("{problem} (needed by {user})"),
                },
                other => other,
            })?;
        }
        Ok(())
    }
}
