//! Line plots as PNG images (success against compute, as the paper plots them), drawn with the
//! project's own raster helpers: axes with ticks, one line per series with error bars, a legend.

use image::{Rgb, RgbImage};
use sftvsrl_envs::draw::{draw_text, fill_circle, fill_rect, text_width};

/// One line of a plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: Rgb<u8>,
    /// `(x, y, error bar half-height)`, drawn in the given order.
    pub points: Vec<(f64, f64, f64)>,
}

/// What a plot shows.
#[derive(Clone, Debug)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;
const MARGIN: (f32, f32, f32, f32) = (110.0, 40.0, 90.0, 90.0); // left, right, top, bottom
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// Evenly spaced "nice" tick values covering `lo..=hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo).max(1e-12) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label: short, without trailing zeros.
fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-2) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws a straight line `width` pixels thick.
fn line(img: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), width: f32, c: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()) / 0.5).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        fill_circle(img, x0 + t * (x1 - x0), y0 + t * (y1 - y0), width / 2.0, c);
    }
}

/// Renders `plot`; the y axis starts at 0, both axes span every point and error bar.
pub fn render(plot: &Plot) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let (left, right, top, bottom) = MARGIN;
    let (x1, y1) = (WIDTH as f32 - right, HEIGHT as f32 - bottom);
    let points = plot.series.iter().flat_map(|s| s.points.iter());
    let (mut x_lo, mut x_hi, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y, e) in points {
        (x_lo, x_hi, y_hi) = (x_lo.min(x), x_hi.max(x), y_hi.max(y + e));
    }
    if !x_lo.is_finite() {
        (x_lo, x_hi) = (0.0, 1.0);
    }
    if x_hi - x_lo < 1e-12 {
        (x_lo, x_hi) = (x_lo - 0.5, x_hi + 0.5);
    }
    let y_hi = if y_hi > 0.0 { y_hi * 1.1 } else { 1.0 };
    let px = |x: f64| left + ((x - x_lo) / (x_hi - x_lo)) as f32 * (x1 - left);
    let py = |y: f64| y1 - (y / y_hi) as f32 * (y1 - top);

    for t in ticks(0.0, y_hi) {
        fill_rect(
            &mut img,
            left as i64,
            py(t) as i64,
            (x1 - left) as i64,
            1,
            GRID,
        );
        let text = label(t);
        draw_text(
            &mut img,
            left - 12.0 - text_width(&text, 18.0),
            py(t) - 9.0,
            &text,
            18.0,
            INK,
        );
    }
    for t in ticks(x_lo, x_hi) {
        fill_rect(
            &mut img,
            px(t) as i64,
            top as i64,
            1,
            (y1 - top) as i64,
            GRID,
        );
        let text = label(t);
        draw_text(
            &mut img,
            px(t) - text_width(&text, 18.0) / 2.0,
            y1 + 10.0,
            &text,
            18.0,
            INK,
        );
    }
    line(&mut img, (left, top), (left, y1), 2.0, INK);
    line(&mut img, (left, y1), (x1, y1), 2.0, INK);
    let title_x = (WIDTH as f32 - text_width(&plot.title, 24.0)) / 2.0;
    draw_text(&mut img, title_x, 20.0, &plot.title, 24.0, INK);
    let xl_x = left + (x1 - left - text_width(&plot.x_label, 20.0)) / 2.0;
    draw_text(&mut img, xl_x, y1 + 45.0, &plot.x_label, 20.0, INK);
    draw_text(&mut img, 10.0, top - 35.0, &plot.y_label, 20.0, INK);

    for (i, s) in plot.series.iter().enumerate() {
        let at = |&(x, y, _): &(f64, f64, f64)| (px(x), py(y));
        for pair in s.points.windows(2) {
            line(&mut img, at(&pair[0]), at(&pair[1]), 3.0, s.color);
        }
        for p @ &(x, y, e) in &s.points {
            let (cx, cy) = at(p);
            fill_circle(&mut img, cx, cy, 5.0, s.color);
            if e > 0.0 {
                line(
                    &mut img,
                    (px(x), py(y - e)),
                    (px(x), py(y + e)),
                    1.5,
                    s.color,
                );
                for end in [y - e, y + e] {
                    line(
                        &mut img,
                        (cx - 6.0, py(end)),
                        (cx + 6.0, py(end)),
                        1.5,
                        s.color,
                    );
                }
            }
        }
        let ly = top + 10.0 + 28.0 * i as f32;
        let lx = x1 - 230.0;
        line(
            &mut img,
            (lx, ly + 10.0),
            (lx + 30.0, ly + 10.0),
            4.0,
            s.color,
        );
        draw_text(&mut img, lx + 40.0, ly, &s.label, 20.0, INK);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let labels: Vec<String> = ticks(0.0, 1.0).into_iter().map(label).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        let t = ticks(3.2e12, 9.9e12);
        assert!(
            t.len() >= 3 && t[0] >= 3.2e12 && *t.last().unwrap() <= 9.9e12,
            "{t:?}"
        );
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(2e12), "2.0e12");
    }

    #[test]
    fn series_are_drawn_in_their_colours() {
        let red = Rgb([220, 30, 30]);
        let plot = Plot {
            title: "success".into(),
            x_label: "GFLOPs".into(),
            y_label: "%".into(),
            series: vec![Series {
                label: "RL".into(),
                color: red,
                points: vec![(0.0, 10.0, 2.0), (5.0, 30.0, 3.0)],
            }],
        };
        let img = render(&plot);
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        let reds = img.pixels().filter(|p| **p == red).count();
        assert!(reds > 500, "{reds} red pixels");
        // The line's midpoint lies on the drawn segment (the y axis reaches 1.1 × (30 + 3)).
        let (x, y) = (
            (MARGIN.0 + (WIDTH as f32 - MARGIN.1)) / 2.0,
            HEIGHT as f32 - MARGIN.3 - (20.0 / 36.3) * (HEIGHT as f32 - MARGIN.3 - MARGIN.2),
        );
        assert_eq!(*img.get_pixel(x as u32, y as u32), red);
    }
}
