//! Hostile V-IRL route folders: `route_infos.json` (cuts, every field of route 0 of the wrong
//! type, impossible values), `gps_pano_mapping.pkl` (cuts, flips, huge lengths, nesting and memo
//! bombs, foreign opcodes) through `sftvsrl nav sample`, and street views (damaged JPEG
//! headers and metadata) through `nav sample --vision` and `nav render`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::corrupt::{
    copy_dir, cut_points, flip_points, flipped, path_name, paths, replaced, steps, value_at,
    wrong_type,
};
use super::{Case, Expect, args, s};

type Edit = Arc<dyn Fn(&Path) + Send + Sync>;
/// What a case does to each panorama's bytes.
type Damage = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// How a case reads its route folder.
#[derive(Clone, Copy)]
pub enum Read {
    /// `nav sample`: routes and the mapping.
    Sample,
    /// `nav sample --vision`: also every panorama's header and metadata.
    Vision,
    /// `nav render`: also decodes a panorama.
    Render,
}

/// The command that reads route folder `routes` as `read` says.
fn command(read: Read, routes: &Path, dir: &Path) -> Vec<String> {
    let r = s(routes);
    match read {
        Read::Sample => args(&["nav", "sample", "--routes", &r]),
        Read::Vision => args(&["nav", "sample", "--vision", "--routes", &r]),
        Read::Render => args(&[
            "nav",
            "render",
            "--routes",
            &r,
            "--resolution",
            "32",
            "--out",
            &s(&dir.join("grid.png")),
        ]),
    }
}

/// The pristine run of `read` on `routes`.
pub fn pristine(read: Read, routes: &Path, dir: &Path) -> Vec<String> {
    command(read, routes, dir)
}

/// A case that copies `pristine`, applies `edit`, and reads the copy; the error must name
/// `names` (a file name inside the folder) or the folder.
fn case(
    pristine: &Path,
    read: Read,
    label: String,
    expect: Expect,
    names: &'static str,
    edit: Edit,
) -> Case {
    let pristine = pristine.to_path_buf();
    Case::new(label, expect, move |dir: &Path| {
        let routes = dir.join("routes");
        copy_dir(&pristine, &routes);
        edit(&routes);
        (command(read, &routes, dir), s(&routes.join(names)))
    })
}

fn write(name: &str, bytes: Vec<u8>) -> Edit {
    let name = name.to_string();
    Arc::new(move |dir: &Path| std::fs::write(dir.join(&name), &bytes).unwrap())
}

/// The fields of a route that the loader reads.
const ROUTE_FIELDS: [&str; 6] = [
    "start_place.name",
    "dest_place.name",
    "start_place.relocated_geocode",
    "route_results.geocode_list",
    "init_heading",
    "milestone_info",
];

/// Cases for `route_infos.json` and `gps_pano_mapping.pkl` of the text-only folder `pristine`.
pub fn route_cases(pristine: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |label: String, expect: Expect, names: &'static str, edit: Edit| {
        cases.push(case(pristine, Read::Sample, label, expect, names, edit));
    };
    let file = "route_infos.json";
    let text = std::fs::read(pristine.join(file)).unwrap();
    let routes: Value = serde_json::from_slice(&text).unwrap();
    for cut in cut_points(text.len(), &[1, 2], 16) {
        add(
            format!("{file} cut at byte {cut}"),
            Expect::Fails,
            file,
            write(file, text[..cut].to_vec()),
        );
    }
    // Every field of route 0 of the wrong type (fields the loader does not read may be anything).
    let route0 = value_at(&routes, &steps(&["0", "0"]));
    for path in paths(route0, 3) {
        let name = path_name(&path);
        let read = ROUTE_FIELDS.iter().any(|f| {
            name == *f || name.starts_with(&format!("{f}[")) || f.starts_with(&format!("{name}."))
        });
        let mut full = steps(&["0", "0"]);
        full.extend(path);
        let v = replaced(&routes, &full, wrong_type(value_at(&routes, &full)));
        let expect = if read { Expect::Fails } else { Expect::NoCrash };
        add(
            format!("{file} route 0 `{name}` of the wrong type"),
            expect,
            file,
            write(file, v.to_string().into_bytes()),
        );
    }
    let bad: Vec<(&str, &[&str], Value)> = vec![
        (
            "a start out of range",
            &["0", "0", "start_place", "relocated_geocode"],
            json!([95.0, 0.0]),
        ),
        (
            "a start of one number",
            &["0", "0", "start_place", "relocated_geocode"],
            json!([40.0]),
        ),
        (
            "a point of nulls",
            &["0", "0", "route_results", "geocode_list", "0"],
            json!([null, null]),
        ),
        (
            "a longitude of 1e308",
            &["0", "0", "route_results", "geocode_list", "0"],
            json!([40.0, 1e308]),
        ),
        (
            "no points",
            &["0", "0", "route_results", "geocode_list"],
            json!([]),
        ),
        (
            "an empty milestone text",
            &["0", "0", "milestone_info"],
            json!(""),
        ),
        (
            "a milestone without a heading",
            &["0", "0", "milestone_info"],
            json!("{\n\"landmarks\": \"x\",\n}"),
        ),
        (
            "a milestone heading without a direction",
            &["0", "0", "milestone_info"],
            json!("{\n\"to_next_intersection_heading\": \"90\",\n}"),
        ),
        (
            "a milestone heading of 30 digits",
            &["0", "0", "milestone_info"],
            json!(
                "{\n\"to_next_intersection_heading\": \"999999999999999999999999999999 (north)\",\n}"
            ),
        ),
        ("no routes", &["0"], json!([])),
        ("a route that is a number", &["0", "0"], json!(5)),
    ];
    for (label, path, value) in bad {
        let v = replaced(&routes, &steps(path), value);
        add(
            format!("{file} {label}"),
            Expect::Fails,
            file,
            write(file, v.to_string().into_bytes()),
        );
    }
    for heading in [json!(1e308), json!(-1e308), json!(-0.0), json!(720.5)] {
        let v = replaced(
            &routes,
            &steps(&["0", "0", "init_heading"]),
            heading.clone(),
        );
        add(
            format!("{file} init_heading {heading}"),
            Expect::NoCrash,
            file,
            write(file, v.to_string().into_bytes()),
        );
    }
    for (label, content) in [
        ("an object", b"{}".to_vec()),
        ("an empty list", b"[]".to_vec()),
        ("a string", b"\"routes\"".to_vec()),
        ("not UTF-8", vec![b'[', 0xff, b']']),
        ("empty", Vec::new()),
    ] {
        add(
            format!("{file} {label}"),
            Expect::Fails,
            file,
            write(file, content),
        );
    }
    add(
        format!("{file} missing"),
        Expect::Fails,
        file,
        Arc::new(|d: &Path| std::fs::remove_file(d.join("route_infos.json")).unwrap()),
    );

    // The pickle.
    let pkl = "gps_pano_mapping.pkl";
    let bytes = std::fs::read(pristine.join(pkl)).unwrap();
    let opcodes: Vec<usize> = (0..64).collect();
    for cut in cut_points(bytes.len(), &opcodes, 24) {
        add(
            format!("{pkl} cut at byte {cut}"),
            Expect::Fails,
            pkl,
            write(pkl, bytes[..cut].to_vec()),
        );
    }
    for (k, at) in flip_points(0..bytes.len(), 30, 3).into_iter().enumerate() {
        add(
            format!("{pkl} flip {k} at byte {at}"),
            Expect::NoCrash,
            pkl,
            write(pkl, flipped(&bytes, at)),
        );
    }
    for (label, content) in hostile_pickles() {
        add(
            format!("{pkl} {label}"),
            Expect::Fails,
            pkl,
            write(pkl, content),
        );
    }
    add(
        format!("{pkl} missing"),
        Expect::Fails,
        pkl,
        Arc::new(|d: &Path| std::fs::remove_file(d.join("gps_pano_mapping.pkl")).unwrap()),
    );
    cases
}

/// Pickles built to hurt: huge declared lengths, deep nesting, a memo bomb, foreign opcodes.
fn hostile_pickles() -> Vec<(&'static str, Vec<u8>)> {
    let proto = [0x80, 4];
    let with = |body: &[u8]| [&proto[..], body].concat();
    let mut deep = with(&[b'K', 1]);
    deep.extend(std::iter::repeat_n(0x85u8, 200_000)); // TUPLE1
    deep.push(b'.');
    let mut bomb = with(&[b'(', b'K', 1, b'K', 2, 0x86, 0x94]); // MARK (1, 2) MEMOIZE
    for k in 0..100_000u32 {
        // LONG_BINGET k twice, TUPLE2, MEMOIZE as k + 1: each tuple doubles the last.
        bomb.push(b'j');
        bomb.extend(k.to_le_bytes());
        bomb.push(b'j');
        bomb.extend(k.to_le_bytes());
        bomb.extend([0x86, 0x94]);
    }
    bomb.extend([b'd', b'.']);
    let mut long8 = with(&[0x8d]);
    long8.extend((1u64 << 60).to_le_bytes());
    long8.extend(b"abc.");
    let mut long4 = with(b"X");
    long4.extend(u32::MAX.to_le_bytes());
    long4.extend(b"abc.");
    let mut frame = with(&[0x95]);
    frame.extend(u64::MAX.to_le_bytes());
    frame.extend([b'}', b'.']);
    vec![
        ("with 200 000 nested tuples", deep),
        ("with a memo bomb", bomb),
        ("with a string of 2^60 bytes", long8),
        ("with a string of 2^32-1 bytes", long4),
        ("with a frame of 2^64-1 bytes and an empty dict", frame),
        ("of protocol 1", vec![0x80, 1, b'}', b'.']),
        ("with a GLOBAL opcode", with(b"cnumpy\nfloat64\n.")),
        ("of a list", with(b"].")),
        (
            "of a dict with an int value",
            with(&[b'}', b'K', 1, b'K', 2, 0x86, b'K', 3, b's', b'.']),
        ),
        (
            "of a dict with a 3-tuple key",
            with(&[
                b'}', b'K', 1, b'K', 2, b'K', 3, 0x87, 0x8c, 1, b'p', b's', b'.',
            ]),
        ),
        ("with a memo lookup never stored", with(&[b'h', 9, b'.'])),
        ("that ends without STOP", with(b"}")),
        ("empty", Vec::new()),
    ]
}

/// Cases for the street views of the folder `pristine` (with panoramas): every `.jpg` damaged
/// alike, the metadata, and the folder missing.
pub fn view_cases(pristine: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let views = pristine.join("street_views");
    let jpg = std::fs::read_dir(&views)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .expect("a panorama");
    let bytes = std::fs::read(&jpg).unwrap();
    let sof = (0..bytes.len() - 1)
        .find(|&i| bytes[i] == 0xff && bytes[i + 1] == 0xc0)
        .expect("a baseline JPEG frame header");
    let mut add =
        |label: String, expect: Expect, read: Read, names: &'static str, damage: Damage| {
            let edit: Edit = Arc::new(move |routes: &Path| {
                for entry in std::fs::read_dir(routes.join("street_views")).unwrap() {
                    let p = entry.unwrap().path();
                    if p.extension().is_some_and(|e| e == "jpg") {
                        let b = std::fs::read(&p).unwrap();
                        std::fs::write(&p, damage(&b)).unwrap();
                    }
                }
            });
            cases.push(case(pristine, read, label, expect, names, edit));
        };
    // Cuts before and inside the frame header fail everywhere; later cuts leave the header
    // readable (the decoder may fill in what is missing).
    for cut in cut_points(sof + 10, &[2, sof], 6) {
        for read in [Read::Vision, Read::Render] {
            add(
                format!("panoramas cut at byte {cut}"),
                Expect::Fails,
                read,
                "street_views",
                Arc::new(move |b: &[u8]| b[..cut].to_vec()),
            );
        }
    }
    for frac in [2, 4] {
        add(
            format!("panoramas cut to 1/{frac}"),
            Expect::NoCrash,
            Read::Render,
            "street_views",
            Arc::new(move |b: &[u8]| b[..b.len() / frac].to_vec()),
        );
    }
    // The frame header's height and width (big-endian u16s at sof + 5 and sof + 7).
    for (label, at, value) in [
        ("height 0", 5, 0u16),
        ("width 0", 7, 0),
        ("height 65535", 5, u16::MAX),
        ("width 65535", 7, u16::MAX),
    ] {
        let expect = if value == 0 {
            Expect::Fails
        } else {
            Expect::NoCrash
        };
        for read in [Read::Vision, Read::Render] {
            add(
                format!("panoramas of {label}"),
                expect,
                read,
                "street_views",
                Arc::new(move |b: &[u8]| {
                    let mut out = b.to_vec();
                    out[sof + at..sof + at + 2].copy_from_slice(&value.to_be_bytes());
                    out
                }),
            );
        }
    }
    for (k, at) in flip_points(0..sof + 20, 8, 11).into_iter().enumerate() {
        add(
            format!("panoramas flip {k} at byte {at}"),
            Expect::NoCrash,
            Read::Render,
            "street_views",
            Arc::new(move |b: &[u8]| flipped(b, at)),
        );
    }
    let huge_png = huge_png_header();
    for (label, content) in [
        ("empty", Vec::new()),
        ("text", b"not an image".to_vec()),
        ("a PNG declaring 2^31-1 pixels a side", huge_png),
    ] {
        for read in [Read::Vision, Read::Render] {
            let c = content.clone();
            add(
                format!("panoramas {label}"),
                Expect::Fails,
                read,
                "street_views",
                Arc::new(move |_: &[u8]| c.clone()),
            );
        }
    }
    // Metadata: the rotation wrong.
    for (label, meta) in [
        ("a string rotation", json!({"rotation": "north"})),
        ("no rotation", json!({})),
        ("a list", json!([1])),
    ] {
        let text = meta.to_string().into_bytes();
        let edit: Edit = Arc::new(move |routes: &Path| {
            for entry in std::fs::read_dir(routes.join("street_views")).unwrap() {
                let p = entry.unwrap().path();
                if p.to_str().unwrap().ends_with(".metadata.json") {
                    std::fs::write(&p, &text).unwrap();
                }
            }
        });
        cases.push(case(
            pristine,
            Read::Vision,
            format!("metadata with {label}"),
            Expect::Fails,
            "street_views",
            edit,
        ));
    }
    cases.push(case(
        pristine,
        Read::Vision,
        "street_views missing".into(),
        Expect::Fails,
        "street_views",
        Arc::new(|routes: &Path| std::fs::remove_dir_all(routes.join("street_views")).unwrap()),
    ));
    cases
}

/// A PNG signature and header chunk declaring a 2^31-1 × 2^31-1 RGB image, and nothing else.
pub fn huge_png_header() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(0x7fff_ffffu32.to_be_bytes());
    ihdr.extend(0x7fff_ffffu32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(ihdr);
    out.extend(crc.to_be_bytes());
    out
}

/// CRC-32 (PNG's chunk checksum).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The route folder of the envs crate's fixtures (routes and mapping, no street views).
pub fn fixture_routes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("envs/tests/fixtures/nav/routes")
}
