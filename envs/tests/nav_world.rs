//! Synthetic worlds round-trip through the real-format loader, and their street views show the
//! landmark signs where the instructions say they are.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sftvsrl_envs::nav::data::{MAPPING_FILE, ROUTE_FILE, STREET_VIEW_DIR};
use sftvsrl_envs::nav::episode::pano_for_point;
use sftvsrl_envs::nav::panomap::PanoMap;
use sftvsrl_envs::nav::panorama::{GridRenderer, SEPARATOR_PX, panorama_paths};
use sftvsrl_envs::nav::world::city::City;
use sftvsrl_envs::nav::world::logo::{LandmarkLook, logo_of};
use sftvsrl_envs::nav::world::style::CityStyle;
use sftvsrl_envs::nav::world::{WORLD_FILE, WorldSpec, generate};
use sftvsrl_envs::nav::{NavConfig, Navigation, PromptLayout, ViewHeadings, expert_examples};
use sftvsrl_envs::{Env, Rng};

const SEED: u64 = 11;

fn spec(style: CityStyle) -> WorldSpec {
    WorldSpec {
        style,
        routes: 3,
        seed: SEED,
        pano_width: 512,
        landmarks: LandmarkLook::Signs,
        names: None,
        grid_heading: None,
    }
}

/// A world generated once per test binary.
fn world(style: CityStyle) -> &'static Path {
    static NYC: OnceLock<PathBuf> = OnceLock::new();
    static WORLDWIDE: OnceLock<PathBuf> = OnceLock::new();
    let cell = if style == CityStyle::Nyc {
        &NYC
    } else {
        &WORLDWIDE
    };
    cell.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nav-world-{}", style.name()));
        let _ = std::fs::remove_dir_all(&dir);
        let summary = generate(&spec(style), &dir).unwrap();
        assert_eq!(summary.routes, 3);
        dir
    })
}

#[test]
fn worlds_load_through_the_real_loader() {
    for style in [CityStyle::Nyc, CityStyle::Worldwide] {
        let dir = world(style);
        let routes: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(ROUTE_FILE)).unwrap()).unwrap();
        assert_eq!(routes[0].as_array().unwrap().len(), 3);
        assert!(routes[1].is_u64());
        let map = PanoMap::load(&dir.join(MAPPING_FILE)).unwrap();
        assert!(map.len() > 10);
        for (_, id) in map.entries() {
            let (jpg, meta) = panorama_paths(&dir.join(STREET_VIEW_DIR), id);
            assert!(jpg.is_file() && meta.is_file(), "{id}");
        }
        // Loading checks every point of every rail against the mapping and the images.
        let mut env = Navigation::open(
            dir,
            NavConfig {
                vision: true,
                ..NavConfig::default()
            },
        )
        .unwrap();
        let t = env.reset(1);
        let img = t.image.clone().unwrap();
        assert_eq!(img.dimensions(), (2405, 2405));
        assert_eq!(img.get_pixel(1202, 600).0, [0, 0, 0], "vertical separator");
        assert_eq!(
            img.get_pixel(600, 1202).0,
            [0, 0, 0],
            "horizontal separator"
        );
        assert!(
            t.turns[0]
                .text
                .contains("O_1: You observe an image of 4 views; \nA_1: \n")
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let small = WorldSpec {
        routes: 1,
        pano_width: 256,
        ..spec(CityStyle::Worldwide)
    };
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nav-world-again-{i}"));
            let _ = std::fs::remove_dir_all(&dir);
            generate(&small, &dir).unwrap();
            dir
        })
        .collect();
    for f in [ROUTE_FILE, MAPPING_FILE] {
        assert_eq!(
            std::fs::read(dirs[0].join(f)).unwrap(),
            std::fs::read(dirs[1].join(f)).unwrap(),
            "{f}"
        );
    }
    let map = PanoMap::load(&dirs[0].join(MAPPING_FILE)).unwrap();
    let (_, id) = &map.entries()[0];
    let jpg = |d: &Path| std::fs::read(panorama_paths(&d.join(STREET_VIEW_DIR), id).0).unwrap();
    assert_eq!(jpg(&dirs[0]), jpg(&dirs[1]));
}

/// Which grid view (reference headings: cur-135, cur-45, cur+45, cur+135) shows a relation.
fn view_of(relation: &str) -> Option<usize> {
    ["left behind", "left front", "right front", "right behind"]
        .iter()
        .position(|r| *r == relation)
}

/// Checks, at every named diagonal landmark of a few episodes in the world at `dir`, that the
/// view the instruction names holds more than `min_ink` pixels of the colour `color` gives for the
/// landmark (`None`: not checked), in views `res` pixels wide. Returns how many were checked.
fn landmarks_in_named_views(
    dir: &Path,
    res: u32,
    min_ink: usize,
    color: impl Fn(&str) -> Option<[u8; 3]>,
) -> usize {
    let mut env = Navigation::open(dir, NavConfig::default()).unwrap();
    let gap = res + SEPARATOR_PX;
    let mut renderer = GridRenderer::new(dir.join(STREET_VIEW_DIR), 640, res, 90.0);
    let mut checked = 0;
    for seed in 0..6 {
        env.reset(seed);
        let route = env.route().unwrap().clone();
        for (k, p) in env.rail().iter().enumerate() {
            let landmark = p
                .observation
                .split_once(" is on your ")
                .filter(|_| p.intersection);
            let Some((name, view)) = landmark
                .and_then(|(n, r)| Some((n.trim_start_matches("The destination "), view_of(r)?)))
            else {
                continue;
            };
            let Some(board) = color(name) else { continue };
            let pano = pano_for_point(env.data(), &route, p, k).unwrap();
            let img = renderer
                .render(&pano, p.heading, ViewHeadings::Reference)
                .unwrap();
            let (ox, oy) = ((view % 2) as u32 * gap, (view / 2) as u32 * gap);
            let ink = (oy..oy + res)
                .flat_map(|y| (ox..ox + res).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    (0..3).all(|c| (img.get_pixel(x, y).0[c] as i32 - board[c] as i32).abs() < 24)
                })
                .count();
            assert!(
                ink > min_ink,
                "{name}: {ink} pixels of {board:?} in view {view} at rail point {k}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn landmark_signs_appear_in_the_view_the_instruction_names() {
    let style = CityStyle::Nyc;
    let city = City::generate(style, style.style(), &mut Rng::derive(SEED, 0));
    // At a quarter of the grid's resolution.
    let checked = landmarks_in_named_views(world(style), 300, 40, |name| {
        let place = city.places.iter().find(|pl| pl.name == name).unwrap();
        Some(place.sign_colors.0)
    });
    assert!(checked >= 3, "only {checked} diagonal landmarks seen");
}

#[test]
fn logo_worlds_show_each_landmark_s_logo_in_tiny_views() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nav-world-logos");
    let _ = std::fs::remove_dir_all(&dir);
    let logos = WorldSpec {
        landmarks: LandmarkLook::Logos,
        ..spec(CityStyle::Nyc)
    };
    let summary = generate(&logos, &dir).unwrap();
    assert_eq!(summary.landmarks, "logos");
    let described = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(WORLD_FILE)).unwrap()).unwrap()
    };
    assert_eq!(described(&dir)["landmarks"], "logos");
    assert_eq!(described(world(CityStyle::Nyc))["landmarks"], "signs");
    // The look changes the street views only: the routes are those of the signs world.
    assert_eq!(
        std::fs::read(dir.join(ROUTE_FILE)).unwrap(),
        std::fs::read(world(CityStyle::Nyc).join(ROUTE_FILE)).unwrap()
    );
    // Views 48 pixels wide; black logos are left out, as storefronts are nearly black too.
    let checked = landmarks_in_named_views(&dir, 48, 4, |name| {
        Some(logo_of(name).color).filter(|c| *c != [24, 24, 24])
    });
    assert!(checked >= 2, "only {checked} diagonal landmarks seen");
}

#[test]
fn vision_expert_examples_carry_the_grid() {
    let mut it = expert_examples(
        world(CityStyle::Worldwide),
        true,
        2,
        0,
        &NavConfig::default(),
    )
    .unwrap();
    let ex = it.next().unwrap().unwrap();
    assert_eq!(ex.image.unwrap().dimensions(), (2405, 2405));
    assert!(ex.prompt.contains("stree tviews") && ex.prompt.contains("[Observation format]"));
    assert_eq!(ex.meta["env"], "virl-vl");
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().is_none());
    // The compact layout keeps the image and describes it in the history.
    let compact = NavConfig {
        prompt_layout: PromptLayout::Compact,
        ..NavConfig::default()
    };
    let ex = expert_examples(world(CityStyle::Worldwide), true, 1, 0, &compact)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(ex.image.unwrap().dimensions(), (2405, 2405));
    assert!(ex.prompt.starts_with("Instruction:\n"));
    assert!(
        ex.prompt
            .ends_with("O_1: You observe an image of 4 views; \nA_1: \n")
    );
    assert!(ex.response.starts_with("{\"action\": \"turn_direction("));
}

#[test]
fn the_two_styles_look_different() {
    let mean = |dir: &Path| {
        let map = PanoMap::load(&dir.join(MAPPING_FILE)).unwrap();
        let (_, id) = &map.entries()[0];
        let img = image::open(panorama_paths(&dir.join(STREET_VIEW_DIR), id).0)
            .unwrap()
            .into_rgb8();
        let n = img.pixels().len() as f64;
        img.pixels().fold([0f64; 3], |acc, p| {
            std::array::from_fn(|k| acc[k] + p.0[k] as f64 / n)
        })
    };
    let (a, b) = (
        mean(world(CityStyle::Nyc)),
        mean(world(CityStyle::Worldwide)),
    );
    let d: f64 = (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt();
    assert!(d > 8.0, "{a:?} vs {b:?}");
}

#[test]
fn a_city_can_take_the_other_style_s_names_and_a_set_grid_heading() {
    let (nyc, worldwide) = (CityStyle::Nyc, CityStyle::Worldwide);
    let own = City::generate(worldwide, worldwide.style(), &mut Rng::new(5));
    let chains_spec = WorldSpec {
        names: Some(nyc),
        grid_heading: Some(29.0),
        ..spec(worldwide)
    };
    let chains = City::generate(worldwide, chains_spec.look(), &mut Rng::new(5));
    let nyc_words = nyc.style().name_words;
    let from_nyc = |city: &City| {
        let first_words = city
            .places
            .iter()
            .map(|p| p.name.split(' ').next().unwrap());
        first_words.filter(|w| nyc_words.contains(w)).count()
    };
    assert!(!chains.places.is_empty());
    assert_eq!(from_nyc(&chains), chains.places.len());
    assert_eq!(from_nyc(&own), 0);
    // The look is the worldwide city's; the grid runs as asked.
    assert_eq!(chains.name, own.name);
    assert_eq!(chains.frame.grid_heading, 29.0);
    assert!(
        chains
            .avenue_names
            .iter()
            .all(|a| worldwide.style().avenue_names.contains(&a.as_str()))
    );
    let bad = WorldSpec {
        grid_heading: Some(400.0),
        ..spec(worldwide)
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nav-world-bad-heading");
    let e = generate(&bad, &dir).unwrap_err().to_string();
    assert!(e.contains("grid heading"), "{e}");
}
