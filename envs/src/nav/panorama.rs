//! Street views: equirectangular panoramas (`street_views/<pano>.jpg` with the north rotation in
//! `<pano>.metadata.json`), perspective crops cut from them, and the 2×2 grid the vision task
//! shows (paper-spec §2.5).
//!
//! The projection is the reference's `get_perspective_from_panorama` (pitch 0): a crop pixel's
//! ray has longitude `atan2(x, z)` and latitude `asin(y / |r|)`, rotated by the adjusted heading
//! `((heading - 180) mod 360 + rotation) mod 360`, and lands on panorama column
//! `(lon / 2π + 1/2)(W - 1)`, row `(lat / π + 1/2)(H - 1)`. So column `X` faces compass heading
//! `360·X/(W-1) - rotation`. A yaw only shifts longitudes, so each crop geometry is computed once
//! and reused for every heading. Sampling is bilinear (the reference uses bicubic), and the crops
//! are resized to the grid resolution bilinearly (the reference uses PIL's bicubic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::config::ViewHeadings;
use super::error::NavError;
use super::geo::py_mod;

/// Width of the black lines between the grid's views.
pub const SEPARATOR_PX: u32 = 5;
/// Decoded panoramas kept per renderer.
const CACHE_SIZE: usize = 4;

/// A decoded panorama and its north rotation in degrees.
#[derive(Clone, Debug)]
pub struct Panorama {
    pub image: RgbImage,
    pub rotation: f64,
}

/// Where a panorama's files live.
pub fn panorama_paths(dir: &Path, pano_id: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{pano_id}.jpg")),
        dir.join(format!("{pano_id}.metadata.json")),
    )
}

/// An image decoder's message on one line (some end theirs with a newline).
fn one_line(message: impl std::fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads the `rotation` of `<pano>.metadata.json`.
pub fn read_rotation(dir: &Path, pano_id: &str) -> Result<f64, NavError> {
    let (_, path) = panorama_paths(dir, pano_id);
    let problem = |p: String| NavError::Panorama {
        path: path.clone(),
        pano_id: pano_id.to_string(),
        problem: p,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| problem(format!("cannot read the metadata: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| problem(format!("invalid JSON: {e}")))?;
    match value.get("rotation").and_then(serde_json::Value::as_f64) {
        Some(r) if r.is_finite() => Ok(r),
        _ => Err(problem("field `rotation`: missing or not a number".into())),
    }
}

/// Checks that a panorama's image and metadata exist and are readable, without decoding pixels.
pub fn check_panorama(dir: &Path, pano_id: &str) -> Result<(), NavError> {
    read_rotation(dir, pano_id)?;
    let (path, _) = panorama_paths(dir, pano_id);
    let (w, h) = image::image_dimensions(&path).map_err(|e| NavError::Panorama {
        path: path.clone(),
        pano_id: pano_id.into(),
        problem: one_line(e),
    })?;
    if w < 2 || h < 2 {
        return Err(NavError::Panorama {
            path,
            pano_id: pano_id.into(),
            problem: format!("image is only {w}×{h}"),
        });
    }
    Ok(())
}

/// Loads and decodes a panorama.
pub fn load_panorama(dir: &Path, pano_id: &str) -> Result<Panorama, NavError> {
    let rotation = read_rotation(dir, pano_id)?;
    let (path, _) = panorama_paths(dir, pano_id);
    let image = image::open(&path)
        .map_err(|e| NavError::Panorama {
            path: path.clone(),
            pano_id: pano_id.into(),
            problem: one_line(e),
        })?
        .into_rgb8();
    if image.width() < 2 || image.height() < 2 {
        return Err(NavError::Panorama {
            path,
            pano_id: pano_id.into(),
            problem: "image is smaller than 2×2".into(),
        });
    }
    Ok(Panorama { image, rotation })
}

/// The four view headings of the grid, row-major.
pub fn view_headings(heading: f64, mode: ViewHeadings) -> [f64; 4] {
    let offsets = match mode {
        ViewHeadings::Reference => [-135.0, -45.0, 45.0, 135.0],
        ViewHeadings::AsLabelled => [0.0, 90.0, 180.0, 270.0],
    };
    offsets.map(|o| py_mod(heading + o, 360.0))
}

/// The heading-independent geometry of a crop: per crop pixel, its ray's longitude at yaw 0
/// as a 32-bit fraction of a turn (so a yaw is a wrapping add), and its two panorama rows with
/// the 8-bit weight of the lower one.
struct CropMap {
    turn: Vec<u32>,
    rows: Vec<(u32, u32, u32)>,
}

impl CropMap {
    fn new(size: u32, fov_deg: f64, pano_h: u32) -> Self {
        let f = 0.5 * size as f64 / (0.5 * fov_deg.to_radians()).tan();
        let c = (size as f64 - 1.0) / 2.0;
        let n = (size * size) as usize;
        let (mut turn, mut rows) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for y in 0..size {
            for x in 0..size {
                let (rx, ry) = ((x as f64 - c) / f, (y as f64 - c) / f);
                let lon = rx.atan2(1.0);
                let lat = (ry / (rx * rx + ry * ry + 1.0).sqrt()).asin();
                let fraction = (lon + std::f64::consts::PI) / std::f64::consts::TAU;
                turn.push((fraction * 4_294_967_296.0) as u64 as u32);
                let row = ((lat / std::f64::consts::PI + 0.5) * (pano_h as f64 - 1.0))
                    .clamp(0.0, pano_h as f64 - 1.0);
                let y0 = row.floor();
                rows.push((
                    y0 as u32,
                    (y0 as u32 + 1).min(pano_h - 1),
                    ((row - y0) * 256.0) as u32,
                ));
            }
        }
        CropMap { turn, rows }
    }
}

/// Bilinear source taps for resizing `from` pixels to `to` (pixel-centre aligned, edges
/// clamped): the two source indices and the 8-bit weight of the second.
fn resize_taps(from: u32, to: u32) -> Vec<(usize, usize, u32)> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|i| {
            let s = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f64);
            let i0 = s.floor() as usize;
            (
                i0,
                (i0 + 1).min(from as usize - 1),
                ((s - i0 as f64) * 256.0) as u32,
            )
        })
        .collect()
}

/// Renders the perspective crops and the 2×2 grid. It keeps the crop geometry per panorama
/// height and a few decoded panoramas, so consecutive steps at one position cost no decoding.
pub struct GridRenderer {
    dir: PathBuf,
    crop: u32,
    resolution: u32,
    fov_deg: f64,
    maps: HashMap<u32, Arc<CropMap>>,
    taps: Vec<(usize, usize, u32)>,
    cache: Vec<(String, Arc<Panorama>)>,
}

impl GridRenderer {
    /// A renderer reading panoramas from `dir` (the `street_views` folder).
    pub fn new(dir: PathBuf, crop: u32, resolution: u32, fov_deg: f64) -> Self {
        GridRenderer {
            dir,
            crop,
            resolution,
            fov_deg,
            maps: HashMap::new(),
            taps: resize_taps(crop, resolution),
            cache: Vec::new(),
        }
    }

    /// The decoded panorama `pano_id` (from the cache when recently used).
    pub fn panorama(&mut self, pano_id: &str) -> Result<Arc<Panorama>, NavError> {
        if let Some(at) = self.cache.iter().position(|(id, _)| id == pano_id) {
            let hit = self.cache.remove(at);
            let pano = hit.1.clone();
            self.cache.push(hit);
            return Ok(pano);
        }
        let pano = Arc::new(load_panorama(&self.dir, pano_id)?);
        if self.cache.len() == CACHE_SIZE {
            self.cache.remove(0);
        }
        self.cache.push((pano_id.to_string(), pano.clone()));
        Ok(pano)
    }

    /// One perspective crop (`crop`×`crop`) of `pano` facing compass `heading`.
    pub fn crop(&mut self, pano: &Panorama, heading: f64) -> RgbImage {
        let map = self.map_for(pano.image.height());
        cut_crop(pano, &map, self.crop, heading)
    }

    fn map_for(&mut self, pano_h: u32) -> Arc<CropMap> {
        let (crop, fov) = (self.crop, self.fov_deg);
        self.maps
            .entry(pano_h)
            .or_insert_with(|| Arc::new(CropMap::new(crop, fov, pano_h)))
            .clone()
    }

    /// The grid image of panorama `pano_id` seen from compass `heading`: four crops at the
    /// headings of `mode`, each resized to `resolution`², tiled 2×2 with black separators.
    pub fn render(
        &mut self,
        pano_id: &str,
        heading: f64,
        mode: ViewHeadings,
    ) -> Result<RgbImage, NavError> {
        let pano = self.panorama(pano_id)?;
        Ok(self.render_panorama(&pano, heading, mode))
    }

    /// [`render`](Self::render) for an already decoded panorama. Each view is cut and resized
    /// on its own thread, straight into its rows of the grid.
    pub fn render_panorama(
        &mut self,
        pano: &Panorama,
        heading: f64,
        mode: ViewHeadings,
    ) -> RgbImage {
        let map = self.map_for(pano.image.height());
        let (crop, res, gap) = (self.crop, self.resolution as usize, SEPARATOR_PX as usize);
        let side = 2 * res + gap;
        let mut canvas = vec![0u8; side * side * 3];
        let mut rows: [Vec<&mut [u8]>; 4] = Default::default();
        for (y, row) in canvas.chunks_exact_mut(side * 3).enumerate() {
            let first = match y {
                y if y < res => 0,
                y if y >= res + gap => 2,
                _ => continue,
            };
            let (left, right) = row.split_at_mut((res + gap) * 3);
            rows[first].push(&mut left[..res * 3]);
            rows[first + 1].push(&mut right[..res * 3]);
        }
        let (map, taps) = (&map, &self.taps);
        std::thread::scope(|s| {
            for (view_rows, h) in rows.into_iter().zip(view_headings(heading, mode)) {
                s.spawn(move || resize_into(&cut_crop(pano, map, crop, h), taps, view_rows));
            }
        });
        RgbImage::from_raw(side as u32, side as u32, canvas)
            .unwrap_or_else(|| RgbImage::new(side as u32, side as u32))
    }
}

/// Cuts one crop by bilinear sampling in 8-bit fixed point (the panorama wraps horizontally).
fn cut_crop(pano: &Panorama, map: &CropMap, size: u32, heading: f64) -> RgbImage {
    let w = pano.image.width() as usize;
    let src = pano.image.as_raw();
    let yaw = py_mod(py_mod(heading - 180.0, 360.0) + pano.rotation, 360.0) / 360.0;
    let yaw = (yaw * 4_294_967_296.0) as u64 as u32;
    let span = (w - 1) as u64;
    let mut out = vec![0u8; (size * size * 3) as usize];
    for ((px, &turn), &(y0, y1, fy)) in out.chunks_exact_mut(3).zip(&map.turn).zip(&map.rows) {
        let x = turn.wrapping_add(yaw) as u64 * span;
        let x0 = (x >> 32) as usize;
        let fx = ((x >> 24) & 0xff) as u32;
        let x1 = if x0 + 1 >= w { 0 } else { x0 + 1 };
        let (r0, r1) = (y0 as usize * w, y1 as usize * w);
        let (a, b) = (&src[(r0 + x0) * 3..][..3], &src[(r0 + x1) * 3..][..3]);
        let (c, d) = (&src[(r1 + x0) * 3..][..3], &src[(r1 + x1) * 3..][..3]);
        for k in 0..3 {
            let top = a[k] as u32 * (256 - fx) + b[k] as u32 * fx;
            let bottom = c[k] as u32 * (256 - fx) + d[k] as u32 * fx;
            px[k] = ((top * (256 - fy) + bottom * fy + 32768) >> 16) as u8;
        }
    }
    RgbImage::from_raw(size, size, out).unwrap_or_else(|| RgbImage::new(size, size))
}

/// Resizes a square RGB image bilinearly, in 8-bit fixed point, into `rows` (one slice per output
/// row, as many as taps): a horizontal pass into 16-bit rows, then a vertical pass.
fn resize_into(img: &RgbImage, taps: &[(usize, usize, u32)], rows: Vec<&mut [u8]>) {
    let (w, to) = (img.width() as usize, taps.len());
    let src = img.as_raw();
    let mut wide = vec![0u16; img.height() as usize * to * 3];
    for (line, row) in src.chunks_exact(w * 3).zip(wide.chunks_exact_mut(to * 3)) {
        for (out, &(i0, i1, t)) in row.chunks_exact_mut(3).zip(taps) {
            let (a, b) = (
                [line[i0 * 3], line[i0 * 3 + 1], line[i0 * 3 + 2]],
                [line[i1 * 3], line[i1 * 3 + 1], line[i1 * 3 + 2]],
            );
            let u = 256 - t;
            out[0] = (a[0] as u32 * u + b[0] as u32 * t) as u16;
            out[1] = (a[1] as u32 * u + b[1] as u32 * t) as u16;
            out[2] = (a[2] as u32 * u + b[2] as u32 * t) as u16;
        }
    }
    for (line, &(i0, i1, t)) in rows.into_iter().zip(taps) {
        let (a, b) = (
            &wide[i0 * to * 3..][..to * 3],
            &wide[i1 * to * 3..][..to * 3],
        );
        for ((o, &a), &b) in line.iter_mut().zip(a).zip(b) {
            *o = ((a as u32 * (256 - t) + b as u32 * t + 32768) >> 16) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_follow_the_reference_formula() {
        assert_eq!(
            view_headings(100.0, ViewHeadings::Reference),
            [325.0, 55.0, 145.0, 235.0]
        );
        assert_eq!(
            view_headings(300.0, ViewHeadings::AsLabelled),
            [300.0, 30.0, 120.0, 210.0]
        );
    }

    /// A panorama whose column colour encodes its compass heading.
    fn heading_panorama(rotation: f64) -> Panorama {
        let (w, h) = (721u32, 360u32);
        let image = RgbImage::from_fn(w, h, |x, _| {
            let heading = py_mod(360.0 * x as f64 / (w - 1) as f64 - rotation, 360.0);
            image::Rgb([(heading / 360.0 * 255.0) as u8, 0, 0])
        });
        Panorama { image, rotation }
    }

    #[test]
    fn a_crop_faces_its_heading_under_any_rotation() {
        for rotation in [0.0, 37.0, 250.0] {
            let pano = heading_panorama(rotation);
            let mut r = GridRenderer::new(PathBuf::new(), 64, 64, 90.0);
            for heading in [10.0, 90.0, 200.0, 300.0] {
                let crop = r.crop(&pano, heading);
                let centre = crop.get_pixel(32, 32).0[0] as f64 / 255.0 * 360.0;
                assert!(
                    (centre - heading).abs() < 3.0,
                    "rotation {rotation} heading {heading}: {centre}"
                );
                // Right of centre looks further clockwise.
                let right = crop.get_pixel(50, 32).0[0] as f64 / 255.0 * 360.0;
                assert!(right > centre, "{right} {centre}");
            }
        }
    }

    #[test]
    fn grid_layout() {
        let pano = heading_panorama(0.0);
        let mut r = GridRenderer::new(PathBuf::new(), 32, 60, 90.0);
        let grid = r.render_panorama(&pano, 100.0, ViewHeadings::Reference);
        assert_eq!(grid.dimensions(), (125, 125));
        // The separators are black; each view's centre shows its own heading.
        assert_eq!(grid.get_pixel(62, 10).0, [0, 0, 0]);
        assert_eq!(grid.get_pixel(10, 62).0, [0, 0, 0]);
        for (k, want) in view_headings(100.0, ViewHeadings::Reference)
            .into_iter()
            .enumerate()
        {
            let (x, y) = ((k % 2) as u32 * 65 + 30, (k / 2) as u32 * 65 + 30);
            let got = grid.get_pixel(x, y).0[0] as f64 / 255.0 * 360.0;
            assert!((got - want).abs() < 4.0, "view {k}: {got} vs {want}");
        }
    }
}
