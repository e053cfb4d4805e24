//! GFLOP/s of `sftvsrl_kernels::sgemm` beside the `gemm` crate (0.19, what Burn's Flex backend
//! calls) on the project's shapes, single- and multi-threaded.
//!
//! `cargo run --release -p sftvsrl-kernels --example sgemm_bench -- [FILTER...] [--quick]
//! [--single] [--cpu]`
//!
//! Each number is the best of 5 runs, each run repeating the product for at least 0.5 s
//! (0.1 s and 3 runs with `--quick`). `--single` runs only the single-threaded column; `--cpu`
//! divides by the process's CPU time instead of wall time (per thread), which keeps
//! single-threaded numbers meaningful while other work loads the machine. Check the load
//! average first: the dev machine has 2 cores.

use std::time::{Duration, Instant};

use sftvsrl_kernels::{MatRef, sgemm};

/// (label, m, k, n, A transposed view, B transposed view)
const SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("square", 2048, 2048, 2048, false, false),
    ("tiny up", 3072, 96, 288, false, false),
    ("tiny down", 3072, 288, 96, false, false),
    ("tiny attn", 3072, 96, 96, false, false),
    ("tiny dW=XtdY", 96, 3072, 288, true, false),
    ("tiny dX=dYWt", 3072, 288, 96, false, true),
    ("smol up", 1024, 576, 1536, false, false),
    ("smol down", 1024, 1536, 576, false, false),
    ("smol attn", 1024, 576, 576, false, false),
    ("smol lm head", 1024, 576, 49152, false, false),
    ("smol dW=XtdY", 576, 1024, 1536, true, false),
    ("smol dX=dYWt", 1024, 49152, 576, false, true),
    ("decode16 up", 16, 576, 1536, false, false),
    ("decode16 head", 16, 576, 49152, false, false),
    ("decode1 attn", 1, 576, 576, false, false),
];

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Seconds all threads of this process have spent on a CPU (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// Best GFLOP/s of `f` over `runs` runs of at least `min` each. With `cpu`, time is the CPU
/// time of the process divided by `threads` (robust to other load, for single-thread tuning).
fn best_gflops(
    flops: f64,
    runs: usize,
    min: Duration,
    cpu: Option<usize>,
    mut f: impl FnMut(),
) -> f64 {
    f();
    let mut best = 0.0f64;
    for _ in 0..runs {
        let start = Instant::now();
        let cpu0 = cpu_seconds();
        let mut reps = 0u64;
        while start.elapsed() < min {
            f();
            reps += 1;
        }
        let secs = match cpu {
            Some(threads) => (cpu_seconds() - cpu0) / threads as f64,
            None => start.elapsed().as_secs_f64(),
        };
        best = best.max(flops * reps as f64 / secs / 1e9);
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let cpu = args.iter().any(|a| a == "--cpu");
    let single = args.iter().any(|a| a == "--single");
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (runs, min) = if quick {
        (3, Duration::from_millis(100))
    } else {
        (5, Duration::from_millis(500))
    };
    assert!(
        sftvsrl_kernels::sgemm_available(),
        "no AVX-512 / AVX2+FMA on this CPU"
    );
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_counts: Vec<usize> = if max_threads > 1 && !single {
        vec![1, max_threads]
    } else {
        vec![1]
    };
    let pools: Vec<rayon::ThreadPool> = thread_counts
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect();
    print!("{:<16} {:>20}", "shape", "m×k·k×n");
    for t in &thread_counts {
        print!(
            " | {:>7} {:>7} {:>5}",
            format!("ours/{t}"),
            format!("gemm/{t}"),
            "ratio"
        );
    }
    println!();
    for &(label, m, k, n, at, bt) in SHAPES {
        if !filter.is_empty() && !filter.iter().any(|f| label.contains(f.as_str())) {
            continue;
        }
        let a_data = random(m * k, 1);
        let b_data = random(k * n, 2);
        // A transposed view: the data is A stored column-major (Xᵀ of a row-major X).
        let a = if at {
            MatRef::col_major(&a_data, m, k)
        } else {
            MatRef::row_major(&a_data, m, k)
        };
        let b = if bt {
            MatRef::col_major(&b_data, k, n)
        } else {
            MatRef::row_major(&b_data, k, n)
        };
        let mut c = vec![0.0f32; m * n];
        let mut c_ref = vec![0.0f32; m * n];
        let flops = 2.0 * m as f64 * n as f64 * k as f64;
        let shape = format!(
            "{m}×{k}{}·{k}×{n}{}",
            if at { "ᵀ" } else { "" },
            if bt { "ᵀ" } else { "" }
        );
        print!("{label:<16} {shape:>20}");
        for (&t, pool) in thread_counts.iter().zip(&pools) {
            let ours = pool.install(|| {
                best_gflops(flops, runs, min, cpu.then_some(t), || {
                    sgemm(a, b, &mut c, false).unwrap()
                })
            });
            let par = if t > 1 {
                gemm::Parallelism::Rayon(t)
            } else {
                gemm::Parallelism::None
            };
            let theirs = pool.install(|| {
                best_gflops(flops, runs, min, cpu.then_some(t), || unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c_ref.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.data.as_ptr(),
                        a.col_stride as isize,
                        a.row_stride as isize,
                        b.data.as_ptr(),
                        b.col_stride as isize,
                        b.row_stride as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                })
            });
            print!(" | {ours:>7.1} {theirs:>7.1} {:>5.2}", ours / theirs);
        }
        let err = c
            .iter()
            .zip(&c_ref)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        println!("  (max |ours-gemm| {err:.1e})");
    }
}
