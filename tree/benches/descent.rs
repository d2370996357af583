//! Descent + backup throughput on the synthetic game: one process, and several processes
//! forked onto one arena. One iteration is a search of 100 000 cycles from a fresh tree (the
//! reported throughput is in cycles); a cycle is one descent from the root in minibatches of 8,
//! the synthetic evaluation, and the expansion and backup (or the backup of an exact value,
//! or a collision).

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use banyan_tree::{Arena, PuctParams, TreeError};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

const BATCH: usize = 8;
const ARENA_BYTES: u64 = 256 << 20;
/// Cycles per search: one benchmark iteration is a whole search from a fresh tree, so every
/// sample measures trees of the same size.
const SEARCH: u64 = 100_000;
/// The synthetic game searched (the same tree every time; its root is not solved in a search).
const SEED: u64 = 0xB17E;

/// Runs `cycles` cycles as worker `id` on the tree grown from key `seed`.
fn run(arena: &Arena, id: u32, seed: u64, cycles: u64) {
    let mut worker = arena.worker(id).unwrap();
    let params = PuctParams::default();
    let mut batch = synthetic::Batch::new(BATCH);
    let mut done = 0;
    while done < cycles {
        match synthetic::minibatch(&mut worker, arena, &params, seed, &mut batch) {
            Ok(n) => done += n as u64,
            Err(TreeError::ArenaFull) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Runs `searches` searches of `SEARCH` cycles by `n` processes (forked when `n` > 1), timing
/// only the searching.
fn measure(arena: &Arena, n: u32, searches: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..searches {
        arena.reset();
        let start = Instant::now();
        if n == 1 {
            run(arena, 0, SEED, SEARCH);
        } else {
            let pids: Vec<_> = (0..n)
                .map(|id| {
                    // SAFETY: the child only runs the search loop and leaves with _exit.
                    match unsafe { fork() }.expect("fork") {
                        ForkResult::Parent { child } => child,
                        ForkResult::Child => {
                            run(arena, id, SEED, SEARCH / n as u64);
                            // SAFETY: leaves the child without the parent's exit code.
                            unsafe { nix::libc::_exit(0) }
                        }
                    }
                })
                .collect();
            for pid in pids {
                assert!(matches!(waitpid(pid, None), Ok(WaitStatus::Exited(_, 0))));
            }
        }
        elapsed += start.elapsed();
    }
    elapsed
}

fn descent_backup(c: &mut Criterion) {
    let mut group = c.benchmark_group("descent_backup");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SEARCH));
    for n in [1u32, 2, 4] {
        let arena = Arena::create(ARENA_BYTES, n).unwrap();
        let name = if n == 1 {
            "search_100k/single_process".to_string()
        } else {
            format!("search_100k/{n}_processes")
        };
        group.bench_function(name, |b| b.iter_custom(|iters| measure(&arena, n, iters)));
        assert!(arena.check().is_empty());
    }
    group.finish();
}

criterion_group!(benches, descent_backup);
criterion_main!(benches);
