use std::path::Path;
use sftvsrl_envs::nav::*;
use sftvsrl_envs::nav::panorama::GridRenderer;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[1]);
    let seed: u64 = args[2].parse().unwrap();
    let step: usize = args[3].parse().unwrap();
    let mut env = Navigation::open(dir, NavConfig::default()).unwrap();
    env.try_reset(seed).unwrap();
    let p = env.rail()[step].clone();
    println!("{:?} {} {}", p.pano_id, p.heading, p.oracle_observation());
    let mut r = GridRenderer::new(dir.join("street_views"), 640, 1200, 90.0);
    let t = std::time::Instant::now();
    let g = r.render(p.pano_id.as_ref().unwrap(), p.heading, ViewHeadings::Reference).unwrap();
    println!("{:?}", t.elapsed());
    for h in [10.0, 100.0, 200.0] { let t = std::time::Instant::now(); let _ = r.render(p.pano_id.as_ref().unwrap(), h, ViewHeadings::Reference).unwrap(); println!("cached {:?}", t.elapsed()); }
    let t = std::time::Instant::now(); let _pano = sftvsrl_envs::nav::panorama::load_panorama(&dir.join("street_views"), p.pano_id.as_ref().unwrap()).unwrap(); println!("decode {:?}", t.elapsed());
    g.save(&args[4]).unwrap();
}
