//! Multi-process stress test (a `harness = false` binary, so that it forks from a
//! single-threaded process): N worker processes grow one tree in one arena with a synthetic
//! evaluator, then the arena's checker must find nothing wrong. Also: a worker killed by
//! SIGKILL mid-search, recovered while the others go on; tree reuse between rounds; the
//! arena bytes per visited node of a real (synthetic) search.

#[path = "support/synthetic.rs"]
mod synthetic;

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use banyan_tree::{Arena, PuctParams};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

const BATCH: usize = 8;
const ROUNDS: usize = 5;
const CYCLES_PER_ROUND: usize = 400_000;

fn main() {
    let start = Instant::now();
    for n in [2, 4, 8] {
        stress(n);
    }
    for delay_ms in [40, 120, 250] {
        killed_worker(4, delay_ms);
    }
    bytes_per_visited_node();
    // The libtest summary shape, so runners that read it count these 7 checks.
    println!(
        "test result: ok. 7 passed; 0 failed; finished in {:.2}s",
        start.elapsed().as_secs_f64()
    );
}

/// A flag in shared anonymous memory, seen by forked children.
struct SharedFlag(NonNull<AtomicU32>);

impl SharedFlag {
    fn new() -> SharedFlag {
        // SAFETY: a fresh anonymous mapping, zeroed, large enough for one u32.
        let p = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(4096).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .expect("mmap");
        SharedFlag(p.cast())
    }

    fn get(&self) -> &AtomicU32 {
        // SAFETY: the mapping lives for the whole test.
        unsafe { self.0.as_ref() }
    }
}

/// Forks a worker process running `cycles` descents (or until `stop` is set) as worker `id`.
fn spawn(arena: &Arena, id: u32, seed: u64, cycles: usize, stop: Option<&SharedFlag>) -> Pid {
    // SAFETY: this binary is single-threaded, so the child inherits no held locks.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut worker = arena.worker(id).unwrap();
                let params = PuctParams::default();
                let mut batch = synthetic::Batch::new(BATCH);
                let mut done = 0;
                while done < cycles && stop.is_none_or(|s| s.get().load(Ordering::Relaxed) == 0) {
                    match synthetic::minibatch(&mut worker, arena, &params, seed, &mut batch) {
                        Ok(n) => done += n,
                        Err(banyan_tree::TreeError::ArenaFull) => break,
                        Err(e) => panic!("worker {id}: {e}"),
                    }
                }
            }))
            .is_ok();
            // SAFETY: leaves the forked child at once, without running the parent's exit code.
            unsafe { nix::libc::_exit(if ok { 0 } else { 101 }) }
        }
    }
}

fn wait_ok(pid: Pid) {
    match waitpid(pid, None).expect("waitpid") {
        WaitStatus::Exited(_, 0) => {}
        status => panic!("worker {pid} ended with {status:?}"),
    }
}

fn assert_clean(arena: &Arena, what: &str) {
    let problems = arena.check();
    assert!(
        problems.is_empty(),
        "{what}: {} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// N processes, several rounds with a re-root between them.
fn stress(n: u32) {
    let start = Instant::now();
    let arena = Arena::create(192 << 20, 8).unwrap();
    let mut seed = 0x5EED;
    let mut total = 0;
    for round in 0..ROUNDS {
        let before = arena.node_stats(arena.root()).visits;
        let cycles = CYCLES_PER_ROUND / n as usize;
        let pids: Vec<Pid> = (0..n)
            .map(|w| spawn(&arena, w, seed, cycles, None))
            .collect();
        pids.into_iter().for_each(wait_ok);
        total += cycles * n as usize;
        assert_clean(&arena, &format!("N={n} round {round}"));
        let root = arena.node_stats(arena.root());
        eprintln!(
            "N={n} round {round}: root visits {} (+{}), {} nodes, hashfull {}‰, proven {:?}",
            root.visits,
            root.visits - before,
            arena.node_count(),
            arena.hashfull(),
            root.proven
        );
        assert!(root.visits > before);
        assert_eq!(root.in_flight, 0);
        // Re-root two plies down the principal variation, as after our move and the reply.
        // A solved root ends every descent at once: start a new game so each round grows a tree.
        if root.proven.is_some() {
            arena.reset();
            seed = synthetic::mix(seed, round as u16 + 1);
            continue;
        }
        let pv = arena.pv(arena.root(), 2);
        if pv.len() == 2 {
            let keep = arena
                .children(arena.root())
                .iter()
                .find(|c| c.mv == pv[0])
                .and_then(|c| c.node)
                .map(|n| {
                    arena
                        .children(n)
                        .iter()
                        .find(|c| c.mv == pv[1])
                        .unwrap()
                        .visits
                })
                .unwrap();
            assert!(arena.reroot(&pv));
            assert_eq!(arena.node_stats(arena.root()).visits, keep);
            seed = pv.iter().fold(seed, |k, &m| synthetic::mix(k, m));
            assert_clean(&arena, &format!("N={n} after re-root {round}"));
        }
    }
    eprintln!(
        "N={n}: {total} cycles in {ROUNDS} rounds, {:.1} s, collisions {}, hashfull {}‰, clean",
        start.elapsed().as_secs_f64(),
        arena.collisions(),
        arena.hashfull()
    );
}

/// N processes; one is killed by SIGKILL after `delay_ms` and recovered while the others go on.
fn killed_worker(n: u32, delay_ms: u64) {
    let arena = Arena::create(192 << 20, 8).unwrap();
    let stop = SharedFlag::new();
    let pids: Vec<Pid> = (0..n)
        .map(|w| spawn(&arena, w, 0xDEAD, usize::MAX, Some(&stop)))
        .collect();
    std::thread::sleep(Duration::from_millis(delay_ms));
    let victim = 1;
    kill(pids[victim], Signal::SIGKILL).unwrap();
    match waitpid(pids[victim], None).unwrap() {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
        status => panic!("victim ended with {status:?}"),
    }
    let descents = arena.recover_worker(victim as u32);
    // The others keep searching over the recovered tree for a while.
    std::thread::sleep(Duration::from_millis(150));
    stop.get().store(1, Ordering::Relaxed);
    for (i, pid) in pids.into_iter().enumerate() {
        if i != victim {
            wait_ok(pid);
        }
    }
    // A kill can land between an atomic step and its journal entry: at most one node is then
    // off by one (in-flight, its visits and its parent's), which the repair mends.
    let left = arena.check();
    assert!(left.len() <= 3, "after recovery: {left:?}");
    let repaired = arena.repair();
    assert_clean(&arena, "after repair");
    eprintln!(
        "kill after {delay_ms} ms: victim had {descents} descents outstanding; after recovery \
         {} problems, repair changed {repaired} nodes; tree of {} visits clean",
        left.len(),
        arena.node_stats(arena.root()).visits
    );
}

/// Arena bytes per visited node on a single-process synthetic search from a fresh tree.
fn bytes_per_visited_node() {
    let arena = Arena::create(512 << 20, 1).unwrap();
    let mut worker = arena.worker(0).unwrap();
    let params = PuctParams::default();
    let mut batch = synthetic::Batch::new(BATCH);
    let start = Instant::now();
    let mut cycles = 0;
    while cycles < 1_000_000 {
        cycles += synthetic::minibatch(&mut worker, &arena, &params, 0xB17E, &mut batch).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_clean(&arena, "bytes per node search");
    let visits = arena.node_stats(arena.root()).visits as f64;
    let visited = visited_nodes(&arena, arena.root());
    let bytes = arena.bytes_used() as f64;
    eprintln!(
        "arena bytes per visited node: {:.1} ({bytes} bytes taken by chunks, {visited} nodes \
         with visits, {} nodes materialised; {:.1} bytes per root visit over {visits} visits); \
         {:.0} ns per descent+backup cycle, single process",
        bytes / visited as f64,
        arena.node_count(),
        bytes / visits,
        secs * 1e9 / cycles as f64
    );
}

/// Nodes with at least one visit under `node` (itself included).
fn visited_nodes(arena: &Arena, node: u32) -> u64 {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if arena.node_stats(n).visits > 0 {
            count += 1;
        }
        stack.extend(arena.children(n).iter().filter_map(|c| c.node));
    }
    count
}
