use std::path::Path;
use sftvsrl_envs::nav::world::{generate, WorldSpec, style::CityStyle};
use sftvsrl_envs::nav::*;
use sftvsrl_envs::Env;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let style: CityStyle = args[1].parse().unwrap();
    let n: usize = args[2].parse().unwrap();
    let out = Path::new(&args[3]);
    let w: u32 = args[4].parse().unwrap();
    let t = std::time::Instant::now();
    let s = generate(&WorldSpec { style, routes: n, seed: 7, pano_width: w }, out).unwrap();
    println!("{s:?} in {:?}", t.elapsed());
    let mut env = Navigation::open(out, NavConfig { vision: true, ..Default::default() }).unwrap();
    let tr = env.reset(3).clone();
    println!("{}", tr.turns[0].text);
    for p in env.rail() { println!("{:?} {} {} | {} | {}", p.pano_id, p.heading, p.gt_action, p.oracle_observation(), p.instruction); }
    tr.image.unwrap().save(out.join("grid0.png")).unwrap();
}
