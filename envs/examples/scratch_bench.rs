fn main() {
    let args: Vec<String> = std::env::args().collect();
    let b = sftvsrl_envs::nav::bench::bench_render(std::path::Path::new(&args[1]), 40, 0, &Default::default()).unwrap();
    println!("{}", serde_json::to_string(&b).unwrap());
}
