//! Timing of the vision observation: decoding a panorama and rendering the 2×2 grid, per rail
//! position, over the positions episodes actually visit.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::config::NavConfig;
use super::data::NavData;
use super::episode::{Navigation, pano_for_point};
use super::error::NavError;
use super::panorama::{GridRenderer, load_panorama};
use crate::Rng;

/// Mean and best times in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Timing {
    pub mean_ms: f64,
    pub min_ms: f64,
}

impl Timing {
    fn of(samples: &[f64]) -> Timing {
        Timing {
            mean_ms: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
            min_ms: samples.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

/// The result of [`bench_render`].
#[derive(Clone, Debug, Serialize)]
pub struct RenderBench {
    pub steps: usize,
    /// Side of the grid image.
    pub grid_px: u32,
    /// Panorama size.
    pub panorama_px: (u32, u32),
    /// Reading and decoding one panorama.
    pub decode: Timing,
    /// Cutting four crops and composing the grid from a decoded panorama.
    pub grid: Timing,
    /// Both: the cost of one new observation.
    pub step: Timing,
}

/// Renders the grid at `steps` rail positions of episodes on the routes in `routes_dir`
/// (episode `i` seeded from `Rng::derive(seed, i)`), timing each stage.
pub fn bench_render(
    routes_dir: &Path,
    steps: usize,
    seed: u64,
    config: &NavConfig,
) -> Result<RenderBench, NavError> {
    let config = NavConfig {
        vision: true,
        ..config.clone()
    };
    let data = Arc::new(NavData::load(routes_dir, &config)?);
    let mut env = Navigation::new(
        data.clone(),
        NavConfig {
            vision: false,
            ..config.clone()
        },
    )?;
    let mut renderer = GridRenderer::new(
        data.street_views(),
        config.crop_size,
        config.resolution,
        config.fov_deg,
    );
    let (mut decode, mut grid) = (Vec::new(), Vec::new());
    let (mut grid_px, mut panorama_px) = (0, (0, 0));
    let mut episode = 0;
    while grid.len() < steps {
        env.try_reset(Rng::derive(seed, episode).next_u64())?;
        episode += 1;
        let route = env
            .route()
            .ok_or_else(|| NavError::Invalid("no episode".into()))?
            .clone();
        for (k, point) in env.rail().iter().enumerate().take(steps - grid.len()) {
            let id = pano_for_point(&data, &route, point, k)?;
            let t0 = Instant::now();
            let pano = load_panorama(&data.street_views(), &id)?;
            let t1 = Instant::now();
            let img = renderer.render_panorama(&pano, point.heading, config.virl_view_headings);
            let t2 = Instant::now();
            decode.push((t1 - t0).as_secs_f64() * 1e3);
            grid.push((t2 - t1).as_secs_f64() * 1e3);
            grid_px = img.width();
            panorama_px = pano.image.dimensions();
        }
    }
    let step: Vec<f64> = decode.iter().zip(&grid).map(|(a, b)| a + b).collect();
    Ok(RenderBench {
        steps: grid.len(),
        grid_px,
        panorama_px,
        decode: Timing::of(&decode),
        grid: Timing::of(&grid),
        step: Timing::of(&step),
    })
}
