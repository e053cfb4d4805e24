//! Minimal anti-aliased drawing on RGB images: filled shapes and text.
//!
//! Shapes are given as inside-tests and covered with 4×4 supersampling; text uses the
//! pre-rasterised Noto Sans Mono Bold glyphs (32 px) of the `noto-sans-mono-bitmap` crate, scaled
//! bilinearly to the requested height. Only printable ASCII is drawn; other characters show as `?`.

use image::{Rgb, RgbImage};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

const GLYPH_HEIGHT: RasterHeight = RasterHeight::Size32;
const WEIGHT: FontWeight = FontWeight::Bold;
const SUBSAMPLES: u32 = 4;

fn blend(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>, alpha: f32) {
    if alpha <= 0.0 || x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let a = alpha.min(1.0);
    let px = img.get_pixel_mut(x as u32, y as u32);
    for c in 0..3 {
        px.0[c] = (px.0[c] as f32 * (1.0 - a) + color.0[c] as f32 * a).round() as u8;
    }
}

/// Fills the axis-aligned rectangle `[x, x+w) × [y, y+h)`, clipped to the image.
pub fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, color: Rgb<u8>) {
    let (x0, y0) = (x.max(0), y.max(0));
    let x1 = (x + w).min(img.width() as i64);
    let y1 = (y + h).min(img.height() as i64);
    for yy in y0..y1 {
        for xx in x0..x1 {
            img.put_pixel(xx as u32, yy as u32, color);
        }
    }
}

/// Fills every point of the box `[x0, x1) × [y0, y1)` for which `inside(x, y)` holds, with
/// anti-aliased edges. Coordinates are continuous pixel coordinates.
pub fn fill_shape(
    img: &mut RgbImage,
    (x0, y0, x1, y1): (f32, f32, f32, f32),
    color: Rgb<u8>,
    inside: impl Fn(f32, f32) -> bool,
) {
    let step = 1.0 / SUBSAMPLES as f32;
    let total = (SUBSAMPLES * SUBSAMPLES) as f32;
    for py in (y0.floor() as i64)..(y1.ceil() as i64) {
        for px in (x0.floor() as i64)..(x1.ceil() as i64) {
            let mut hits = 0u32;
            for sy in 0..SUBSAMPLES {
                for sx in 0..SUBSAMPLES {
                    let fx = px as f32 + (sx as f32 + 0.5) * step;
                    let fy = py as f32 + (sy as f32 + 0.5) * step;
                    hits += inside(fx, fy) as u32;
                }
            }
            blend(img, px, py, color, hits as f32 / total);
        }
    }
}

/// Fills a circle.
pub fn fill_circle(img: &mut RgbImage, cx: f32, cy: f32, r: f32, color: Rgb<u8>) {
    fill_shape(img, (cx - r, cy - r, cx + r, cy + r), color, |x, y| {
        (x - cx).powi(2) + (y - cy).powi(2) <= r * r
    });
}

/// Whether `(x, y)` lies inside the polygon (even-odd rule).
pub fn polygon_contains(points: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = points.len().wrapping_sub(1);
    for i in 0..points.len() {
        let (xi, yi) = points[i];
        let (xj, yj) = points[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Fills a polygon.
pub fn fill_polygon(img: &mut RgbImage, points: &[(f32, f32)], color: Rgb<u8>) {
    if points.is_empty() {
        return;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for &(x, y) in points {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    fill_shape(img, (x0, y0, x1, y1), color, |x, y| {
        polygon_contains(points, x, y)
    });
}

/// The width in pixels of `text` drawn at `height` pixels.
pub fn text_width(text: &str, height: f32) -> f32 {
    let scale = height / GLYPH_HEIGHT.val() as f32;
    text.chars().count() as f32 * get_raster_width(WEIGHT, GLYPH_HEIGHT) as f32 * scale
}

/// Draws one line of `text` with its top-left corner at `(x, y)`, `height` pixels tall.
/// Returns the drawn width.
pub fn draw_text(
    img: &mut RgbImage,
    x: f32,
    y: f32,
    text: &str,
    height: f32,
    color: Rgb<u8>,
) -> f32 {
    let scale = height / GLYPH_HEIGHT.val() as f32;
    let advance = get_raster_width(WEIGHT, GLYPH_HEIGHT) as f32 * scale;
    let mut pen = x;
    for ch in text.chars() {
        let ch = if ch == ' ' || ch.is_ascii_graphic() {
            ch
        } else {
            '?'
        };
        if let Some(glyph) = get_raster(ch, WEIGHT, GLYPH_HEIGHT) {
            let (gw, gh) = (glyph.width(), glyph.height());
            let sample = |gx: isize, gy: isize| -> f32 {
                if gx < 0 || gy < 0 || gx as usize >= gw || gy as usize >= gh {
                    0.0
                } else {
                    glyph.pixel(gx as usize, gy as usize).unwrap_or(0) as f32 / 255.0
                }
            };
            let (out_w, out_h) = (
                (gw as f32 * scale).ceil() as i64,
                (gh as f32 * scale).ceil() as i64,
            );
            for oy in 0..out_h {
                for ox in 0..out_w {
                    // Bilinear sample of the glyph's coverage at this output pixel's centre.
                    let gx = (ox as f32 + 0.5) / scale - 0.5;
                    let gy = (oy as f32 + 0.5) / scale - 0.5;
                    let (fx, fy) = (gx.floor(), gy.floor());
                    let (tx, ty) = (gx - fx, gy - fy);
                    let (ix, iy) = (fx as isize, fy as isize);
                    let a = sample(ix, iy) * (1.0 - tx) * (1.0 - ty)
                        + sample(ix + 1, iy) * tx * (1.0 - ty)
                        + sample(ix, iy + 1) * (1.0 - tx) * ty
                        + sample(ix + 1, iy + 1) * tx * ty;
                    blend(
                        img,
                        pen.round() as i64 + ox,
                        y.round() as i64 + oy,
                        color,
                        a,
                    );
                }
            }
        }
        pen += advance;
    }
    pen - x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_their_area() {
        let mut img = RgbImage::new(100, 100);
        fill_circle(&mut img, 50.0, 50.0, 20.0, Rgb([255, 0, 0]));
        let red = img.pixels().filter(|p| p.0[0] > 127).count() as f32;
        let area = std::f32::consts::PI * 400.0;
        assert!((red - area).abs() / area < 0.03, "{red} vs {area}");
        fill_polygon(
            &mut img,
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
            Rgb([0, 255, 0]),
        );
        assert_eq!(img.get_pixel(5, 5).0, [0, 255, 0]);
        assert_eq!(img.get_pixel(11, 11).0, [0, 0, 0]);
    }

    #[test]
    fn text_draws_ink_within_its_width() {
        let mut img = RgbImage::new(200, 60);
        let w = draw_text(&mut img, 10.0, 10.0, "A10", 40.0, Rgb([255, 255, 255]));
        assert!((w - text_width("A10", 40.0)).abs() < 1e-3);
        let ink: Vec<u32> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] > 127)
            .map(|(x, _, _)| x)
            .collect();
        assert!(ink.len() > 200);
        assert!(ink.iter().all(|&x| x >= 10 && (x as f32) <= 10.0 + w + 1.0));
    }
}
