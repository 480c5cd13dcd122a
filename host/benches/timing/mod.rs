//! How the benchmarks time a summary line beside criterion's own figures.

// Each benchmark uses a subset of these helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Seconds per call of `f`, the best of five half-second rounds.
pub(crate) fn best_of_five(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u32;
            while start.elapsed() < Duration::from_millis(500) {
                f();
                calls += 1;
            }
            start.elapsed().as_secs_f64() / f64::from(calls)
        })
        .fold(f64::MAX, f64::min)
}

/// Forwarding per item, ours beside the peer that decodes, clones and encodes: a criterion
/// group named `group` of both over `items` items, then one line of nanoseconds per `what`
/// and the ratio.
pub(crate) fn forwarding<A, B>(
    c: &mut criterion::Criterion,
    (group, what, items): (&str, &str, u64),
    mut ours: impl FnMut() -> A,
    mut decoding: impl FnMut() -> B,
) {
    use std::hint::black_box;
    let mut g = c.benchmark_group(group);
    g.throughput(criterion::Throughput::Elements(items));
    g.bench_function("wasmtel_walk_slice_frame", |b| b.iter(|| black_box(ours())));
    g.bench_function("prost_decode_clone_encode", |b| {
        b.iter(|| black_box(decoding()))
    });
    g.finish();
    let w = best_of_five(|| drop(black_box(ours())));
    let p = best_of_five(|| drop(black_box(decoding())));
    let per = |t: f64| t * 1e9 / items as f64;
    println!(
        "\n{what}, request bytes in to export bytes out: wasmtel {:.0} ns, decode-clone-encode {:.0} ns, ratio {:.1}x\n",
        per(w),
        per(p),
        p / w
    );
}

/// Whether the bench's filter (its first argument that is not a flag) selects `group`, so that
/// its hand-timed summary runs only when asked for; no filter selects every group.
pub(crate) fn selected(group: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|filter| group.contains(&filter) || filter.starts_with(group))
}
