//! The coordinator: owns the shared memory, starts the evaluator and the worker processes,
//! runs each search (limits, info, best move) and keeps the tree between moves.
//!
//! Child processes are started only from the thread that owns the [`Engine`] (the engine's
//! main thread): Linux ties a child's parent-death signal to the thread that forked it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use banyan_nn::builtin::Weights;
use banyan_nn::cache::EvalCache;
use banyan_nn::evaluator::{self, DeviceChoice, EvaluatorConfig, EvaluatorProcess};
use banyan_nn::network::Precision;
use banyan_nn::triton::client::TritonTarget;
use banyan_tree::{Arena, PuctParams};
use cozy_chess::Move;

use crate::control::{Control, MAX_WORKERS};
use crate::limits::{Limits, Progress, StopReason, should_stop};
use crate::moves::{self, GamePosition};
use crate::order::{Order, SearchOrder};
use crate::process::{ProcessMode, SharedFds, WorkerChild};
use crate::report::{self, Event};
use crate::tablebase::{self, LoadReport};

/// The most worker processes (`Threads`).
pub const MAX_THREADS: u32 = MAX_WORKERS as u32;

/// The largest tree (`Hash`, MiB).
pub const MAX_HASH_MB: u64 = banyan_tree::MAX_HASH_MB;

/// How long a search stopped by its node count waits for the playouts in flight to land.
const NODES_GRACE: Duration = Duration::from_secs(1);

/// How long the workers may take to go idle after the answer before they are killed (an
/// evaluator that answers takes milliseconds).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The most of the arena (per mille) a tree kept from the last move may fill.
const MAX_KEPT_PERMILLE: u32 = 400;

/// `CPuct` of the built-in network, tuned for it at 800 nodes a move (nn/net/README.md).
const BUILTIN_NETWORK_CPUCT: f32 = 2.5;

/// The exploration constant `weights` play with unless `CPuct` is set: the built-in network's
/// own, otherwise Lc0's default (what Lc0's networks were tuned with).
fn default_cpuct(weights: &Weights) -> f32 {
    match weights {
        Weights::Builtin => BUILTIN_NETWORK_CPUCT,
        Weights::Heuristic | Weights::File(_) => PuctParams::default().cpuct,
    }
}

/// Everything the GUI can set that the search machinery depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Worker processes.
    pub threads: u32,
    /// Tree arena size, MB.
    pub hash_mb: u64,
    /// The built-in network, the heuristic evaluator or an Lc0 network file.
    pub weights: Weights,
    pub device: DeviceChoice,
    /// Triton server(s) that evaluate instead of the local evaluator (`Backend triton`).
    pub triton: Option<TritonTarget>,
    /// What the network computes in.
    pub precision: Precision,
    /// libtorch CPU threads in the evaluator (0: one per core).
    pub eval_threads: usize,
    pub minibatch: usize,
    /// Shared evaluation cache, MB (0: none).
    pub nncache_mb: usize,
    /// Policy softmax temperature; `None`: the weights' own.
    pub policy_temperature: Option<f32>,
    /// The exploration constant; `None`: the weights' own (the built-in network's tuned value,
    /// Lc0's for any other). The selection formula's parameters, resolved, are
    /// [`EngineConfig::puct`].
    pub cpuct: Option<f32>,
    pub cpuct_base: f32,
    pub cpuct_factor: f32,
    pub fpu_reduction: f32,
    pub mode: ProcessMode,
    /// Principal variations to report.
    pub multipv: usize,
    /// Report per-move statistics at the end of a search.
    pub verbose_move_stats: bool,
    /// Kept back from every clock-based time budget.
    pub move_overhead: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let puct = PuctParams::default();
        EngineConfig {
            threads: 2,
            hash_mb: 256,
            weights: Weights::default(),
            device: DeviceChoice::Auto,
            triton: None,
            precision: Precision::Auto,
            eval_threads: 0,
            minibatch: 32,
            nncache_mb: 64,
            policy_temperature: None,
            cpuct: None,
            cpuct_base: puct.cpuct_base,
            cpuct_factor: puct.cpuct_factor,
            fpu_reduction: puct.fpu_reduction,
            mode: ProcessMode::platform_default(),
            multipv: 1,
            verbose_move_stats: false,
            move_overhead: Duration::from_millis(100),
        }
    }
}

impl EngineConfig {
    /// The selection formula's parameters a search runs with: [`EngineConfig::cpuct`] resolved
    /// for these weights.
    pub fn puct(&self) -> PuctParams {
        PuctParams {
            cpuct: self.cpuct.unwrap_or_else(|| default_cpuct(&self.weights)),
            cpuct_base: self.cpuct_base,
            cpuct_factor: self.cpuct_factor,
            fpu_reduction: self.fpu_reduction,
        }
    }

    fn evaluator_config(&self) -> EvaluatorConfig {
        let mut c = EvaluatorConfig::new(self.weights.clone());
        c.device = self.device;
        c.triton = self.triton.clone();
        c.precision = self.precision;
        c.threads = match self.eval_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        c.policy_temperature = self.policy_temperature;
        // Half of what the workers keep in flight (two minibatches each): one forward pass
        // runs while the next batch is already queued, so the evaluator never waits.
        c.max_batch = (self.minibatch * self.threads as usize).clamp(8, 1024);
        c
    }

    fn same_evaluator(&self, other: &EngineConfig) -> bool {
        (
            &self.weights,
            self.device,
            &self.triton,
            self.precision,
            self.eval_threads,
            self.policy_temperature.map(f32::to_bits),
        ) == (
            &other.weights,
            other.device,
            &other.triton,
            other.precision,
            other.eval_threads,
            other.policy_temperature.map(f32::to_bits),
        )
    }

    fn same_pool(&self, other: &EngineConfig) -> bool {
        (self.threads, self.hash_mb, self.nncache_mb, self.mode)
            == (other.threads, other.hash_mb, other.nncache_mb, other.mode)
    }
}

/// What one `go` asks for, beyond the position.
#[derive(Clone, Debug, Default)]
pub struct GoRequest {
    pub limits: Limits,
    /// Root moves to consider (`searchmoves`); empty: all.
    pub searchmoves: Vec<Move>,
}

/// The worker processes and the shared memory they grow the tree in.
struct Pool {
    arena: Arena,
    control: Control,
    cache: Option<Arc<EvalCache>>,
    workers: Vec<WorkerChild>,
}

impl Pool {
    fn start(config: &EngineConfig, exe: &Path) -> std::io::Result<Pool> {
        let threads = config.threads.clamp(1, MAX_THREADS);
        let arena =
            Arena::create_hash_mb(config.hash_mb, threads).map_err(std::io::Error::other)?;
        let control = Control::create()?;
        let cache = match config.nncache_mb {
            0 => None,
            mb => Some(Arc::new(EvalCache::create(mb)?)),
        };
        let mut pool = Pool {
            arena,
            control,
            cache,
            workers: Vec::new(),
        };
        for id in 0..threads {
            let worker = pool.start_worker(config.mode, exe, id)?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    fn start_worker(&self, mode: ProcessMode, exe: &Path, id: u32) -> std::io::Result<WorkerChild> {
        let fds = SharedFds {
            arena: self.arena.fd(),
            control: self.control.fd(),
            cache: self.cache.as_ref().map(|c| c.fd()),
        };
        WorkerChild::start(mode, exe, id, &fds)
    }

    /// Replaces dead workers, first removing their in-flight counts from the tree.
    fn heal(&mut self, mode: ProcessMode, exe: &Path) -> std::io::Result<()> {
        for id in 0..self.workers.len() {
            if !self.workers[id].is_alive() {
                let removed = self.arena.recover_worker(id as u32);
                let mended = self.arena.repair();
                tracing::warn!(
                    "worker {id} had died; removed {removed} in-flight descents, mended {mended} nodes; restarting it"
                );
                self.workers[id] = self.start_worker(mode, exe, id as u32)?;
            }
        }
        Ok(())
    }
}

/// A search running on its own thread.
struct Running {
    /// Gives the pool back, or `None` if the search thread panicked.
    thread: JoinHandle<Option<Pool>>,
    /// Set by `stop`, and by the search itself just before it answers.
    stop: Arc<AtomicBool>,
    ponderhit: Arc<AtomicBool>,
    /// Set by the search when the evaluator stopped answering or stalled.
    evaluator_failed: Arc<AtomicBool>,
}

/// The engine: configuration, child processes, and the search in progress.
pub struct Engine {
    exe: PathBuf,
    config: EngineConfig,
    evaluator: Option<EvaluatorProcess>,
    pool: Option<Pool>,
    running: Option<Running>,
    /// The last searched position, while the tree still holds its search.
    last: Option<GamePosition>,
    searches: u32,
    /// The last search found the evaluator dead or stalled: replace it before the next.
    evaluator_failed: bool,
    /// `SyzygyPath` as last set, and what loading it found.
    syzygy: (String, LoadReport),
}

impl Engine {
    /// An engine whose child processes re-execute `exe` (the `banyan` binary) when spawned.
    /// Nothing starts until [`Engine::ready`] or the first search.
    pub fn new(exe: PathBuf) -> Engine {
        Engine {
            exe,
            config: EngineConfig::default(),
            evaluator: None,
            pool: None,
            running: None,
            last: None,
            searches: 0,
            evaluator_failed: false,
            syzygy: Default::default(),
        }
    }

    /// Loads the Syzygy tables under `paths` (directories separated by `:`; empty: none),
    /// replacing those loaded before, and says what was found. Forked workers are restarted
    /// before the next search so that they inherit the new tables' mappings; re-executed ones
    /// open them with their next search order.
    pub fn set_syzygy_path(&mut self, paths: &str) -> LoadReport {
        self.wait();
        if self.syzygy.0 != paths || !self.syzygy.1.errors.is_empty() {
            if self.config.mode == ProcessMode::Fork {
                self.pool = None;
                self.last = None;
            }
            self.syzygy = (paths.to_string(), tablebase::load(paths));
        }
        self.syzygy.1.clone()
    }

    /// Applies a new configuration between searches. A new network is loaded at once (so a bad
    /// file is reported now); if it fails, the error is returned and the previous evaluator
    /// settings stay.
    pub fn configure(&mut self, mut config: EngineConfig) -> Result<(), String> {
        self.wait();
        let mut result = Ok(());
        if !config.same_evaluator(&self.config) {
            match evaluator::spawn(&self.exe, &config.evaluator_config()) {
                Ok(process) => {
                    self.evaluator = Some(process);
                    if let Some(cache) = self.pool.as_ref().and_then(|p| p.cache.as_ref()) {
                        cache.clear(); // its priors came from the previous network
                    }
                    self.forget_tree();
                }
                Err(e) => {
                    result = Err(e.to_string());
                    config.weights = self.config.weights.clone();
                    config.device = self.config.device;
                    config.triton = self.config.triton.clone();
                    config.precision = self.config.precision;
                    config.eval_threads = self.config.eval_threads;
                    config.policy_temperature = self.config.policy_temperature;
                }
            }
        }
        if !config.same_pool(&self.config) {
            self.pool = None;
            self.last = None;
        }
        self.config = config;
        result
    }

    /// Starts (or restarts) whatever is not running: the evaluator, then the workers.
    pub fn ready(&mut self) -> Result<(), String> {
        self.start_evaluator()?;
        match &mut self.pool {
            Some(pool) => pool
                .heal(self.config.mode, &self.exe)
                .map_err(|e| format!("restarting a worker: {e}"))?,
            None => {
                self.pool = Some(
                    Pool::start(&self.config, &self.exe)
                        .map_err(|e| format!("starting workers: {e}"))?,
                )
            }
        }
        Ok(())
    }

    /// Starts (or replaces) the evaluator unless a healthy one is running; the workers are
    /// left as they are.
    pub fn start_evaluator(&mut self) -> Result<(), String> {
        self.wait();
        if std::mem::take(&mut self.evaluator_failed) && self.evaluator.take().is_some() {
            tracing::warn!("the evaluator stopped answering; replacing it");
        }
        if !self.evaluator.as_mut().is_some_and(|e| e.is_alive()) {
            if self.evaluator.take().is_some() {
                tracing::warn!("the evaluator had died; restarting it");
            }
            let process = evaluator::spawn(&self.exe, &self.config.evaluator_config())
                .map_err(|e| e.to_string())?;
            self.evaluator = Some(process);
        }
        Ok(())
    }

    /// A description of the evaluator in use.
    pub fn evaluator_description(&self) -> Option<&str> {
        self.evaluator.as_ref().map(|e| e.description())
    }

    /// Forgets the tree (a new game).
    pub fn new_game(&mut self) {
        self.wait();
        self.forget_tree();
    }

    fn forget_tree(&mut self) {
        self.last = None;
        if let Some(pool) = &self.pool {
            pool.arena.reset();
        }
    }

    /// Starts searching `position`; `events` receives the info lines and then exactly one
    /// best move (also when something fails).
    pub fn go(
        &mut self,
        position: GamePosition,
        request: GoRequest,
        events: Box<dyn FnMut(Event) + Send>,
    ) {
        // The clock runs from here: starting children below must come out of this move's time.
        let received = Instant::now();
        let mut events = score_before_bestmove(events);
        self.wait();
        let board = position.history().current().clone();
        let mut legal = Vec::new();
        board.generate_moves(|m| {
            legal.extend(m);
            false
        });
        let searchmoves: Vec<Move> = request
            .searchmoves
            .iter()
            .copied()
            .filter(|m| legal.contains(m))
            .collect();
        // In the tables, only the moves that keep the best result are searched.
        let (searchmoves, tb_root, tb_probes) = match tablebase_root(&position, &legal) {
            Some(probe) => {
                let kept: Vec<Move> = if searchmoves.is_empty() {
                    probe.moves.clone()
                } else {
                    searchmoves
                        .iter()
                        .copied()
                        .filter(|m| probe.moves.contains(m))
                        .collect()
                };
                let outcome = match probe.wdl.game_value() {
                    1 => banyan_tree::Outcome::Win,
                    -1 => banyan_tree::Outcome::Loss,
                    _ => banyan_tree::Outcome::Draw,
                };
                match kept.len() {
                    0 => (searchmoves, None, probe.probes),
                    n if n == legal.len() => (Vec::new(), Some(outcome), probe.probes),
                    _ => (kept, Some(outcome), probe.probes),
                }
            }
            None => (searchmoves, None, 0),
        };
        if legal.is_empty() {
            events(Event::BestMove {
                best: None,
                ponder: None,
            });
            return;
        }
        if let Err(e) = self.ready() {
            events(Event::Error(e));
            events(Event::BestMove {
                best: Some(report::fallback_move(&position, &legal)),
                ponder: None,
            });
            return;
        }
        let pool = self.pool.take().expect("ready");
        let restricted = !searchmoves.is_empty();
        let continuation = self
            .last
            .as_ref()
            .and_then(|last| last.continuation(&position));
        let mut kept = match continuation {
            Some(more) if !restricted => pool
                .arena
                .reroot(&more.iter().map(|&m| moves::encode(m)).collect::<Vec<_>>()),
            _ => {
                pool.arena.reset();
                false
            }
        };
        // A kept subtree that already fills most of the arena would leave this search no
        // room to grow: start afresh instead.
        if kept && pool.arena.hashfull() > MAX_KEPT_PERMILLE {
            pool.arena.reset();
            kept = false;
        }
        tracing::debug!("tree {}", if kept { "reused" } else { "fresh" });
        self.last = (!restricted).then(|| position.clone());
        self.searches = self.searches.wrapping_add(1).max(1);
        let budget = request.limits.nodes.unwrap_or(u64::MAX);
        pool.control.block().begin(self.searches, budget);
        pool.control
            .block()
            .tbhits
            .fetch_add(tb_probes, Ordering::Relaxed);
        let order = Order::Search(SearchOrder {
            search: self.searches,
            minibatch: self.config.minibatch,
            puct: self.config.puct(),
            socket: self
                .evaluator
                .as_ref()
                .expect("ready")
                .socket()
                .to_path_buf(),
            start_fen: position.start_fen.clone(),
            moves: position.moves.iter().map(|&m| moves::encode(m)).collect(),
            searchmoves: searchmoves.iter().map(|&m| moves::encode(m)).collect(),
            syzygy: tablebase::current_dir().unwrap_or_default(),
        });
        let mut pool = pool;
        for worker in &mut pool.workers {
            if let Err(e) = order.write(&mut worker.orders) {
                tracing::warn!("sending an order to worker {}: {e}", worker.pid);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ponderhit = Arc::new(AtomicBool::new(false));
        let evaluator_failed = Arc::new(AtomicBool::new(false));
        let monitor = Monitor {
            pool,
            received,
            search: self.searches,
            limits: request.limits,
            root_moves: if restricted {
                searchmoves.len()
            } else {
                legal.len()
            },
            history: position.history(),
            position: position.clone(),
            config: self.config.clone(),
            tb_root,
            stop: stop.clone(),
            ponderhit: ponderhit.clone(),
            evaluator_failed: evaluator_failed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("search".into())
            .spawn(move || {
                // Whatever happens in the search thread, the GUI gets its one bestmove.
                let answered = std::cell::Cell::new(false);
                let mut events = |event: Event| {
                    answered.set(answered.get() || matches!(event, Event::BestMove { .. }));
                    events(event);
                };
                let run = std::panic::AssertUnwindSafe(|| monitor.run(&mut events));
                let pool = std::panic::catch_unwind(run).ok();
                if pool.is_none() && !answered.get() {
                    events(Event::Error(
                        "the search failed; playing a fallback move".into(),
                    ));
                    events(Event::BestMove {
                        best: Some(report::fallback_move(&position, &legal)),
                        ponder: None,
                    });
                }
                pool
            })
            .expect("start the search thread");
        self.running = Some(Running {
            thread,
            stop,
            ponderhit,
            evaluator_failed,
        });
    }

    /// Asks the running search to stop; its best move follows promptly.
    pub fn stop(&self) {
        if let Some(r) = &self.running {
            r.stop.store(true, Ordering::Relaxed);
        }
    }

    /// The opponent played the move we pondered on: the search goes on under its limits.
    pub fn ponderhit(&self) {
        if let Some(r) = &self.running {
            r.ponderhit.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a search is running and has not been told to stop (nor answered).
    pub fn is_searching(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| !r.thread.is_finished() && !r.stop.load(Ordering::Relaxed))
    }

    /// Waits for the running search (if any) to end by itself or by `stop`.
    pub fn wait(&mut self) {
        if let Some(running) = self.running.take() {
            match running.thread.join() {
                Ok(Some(pool)) => self.pool = Some(pool),
                Ok(None) | Err(_) => {
                    tracing::error!("the search thread panicked; restarting the workers");
                    self.last = None;
                }
            }
            // Relaxed: the join above ordered the search thread's store before this load.
            self.evaluator_failed |= running.evaluator_failed.load(Ordering::Relaxed);
        }
    }

    /// Stops everything and ends the child processes.
    pub fn shutdown(&mut self) {
        self.stop();
        self.wait();
        if let Some(mut pool) = self.pool.take() {
            for worker in &mut pool.workers {
                let _ = Order::Quit.write(&mut worker.orders);
            }
        }
        self.evaluator = None;
        if !std::mem::take(&mut self.syzygy).0.is_empty() {
            tablebase::load(""); // removes the checked directory
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The tablebases' root filter for `position` (with `legal` moves), when tables are loaded.
fn tablebase_root(position: &GamePosition, legal: &[Move]) -> Option<tablebase::RootProbe> {
    if legal.is_empty() || tablebase::current_dir().is_none() {
        return None;
    }
    let mut board = position.start();
    let mut boards = vec![board.clone()];
    for &mv in &position.moves {
        board.play_unchecked(mv);
        boards.push(board.clone());
    }
    tablebase::probe_root(&boards)
}

/// Wraps the GUI's event sink so that every `bestmove` follows an `info` line with a score:
/// tournament runners take a move's score from the last one. Where the search gave none (no
/// time to visit anything, an evaluator that failed), the move itself is shown with a neutral
/// score.
fn score_before_bestmove(mut events: Box<dyn FnMut(Event) + Send>) -> Box<dyn FnMut(Event) + Send> {
    let mut scored = false;
    Box::new(move |event| {
        match &event {
            Event::Info(info) => scored |= !info.lines.is_empty(),
            Event::BestMove { best, .. } if !scored => {
                events(Event::Info(report::Info::unsearched(*best)));
            }
            _ => {}
        }
        events(event)
    })
}

/// The search thread: watches the limits, reports, and ends the search.
struct Monitor {
    pool: Pool,
    /// When `go` arrived.
    received: Instant,
    search: u32,
    limits: Limits,
    root_moves: usize,
    /// The game up to the root: info lines end their PVs where the game would end.
    history: banyan_nn::encode::PositionHistory,
    position: GamePosition,
    config: EngineConfig,
    /// The root's tablebase result, when the root filter applied.
    tb_root: Option<banyan_tree::Outcome>,
    stop: Arc<AtomicBool>,
    ponderhit: Arc<AtomicBool>,
    evaluator_failed: Arc<AtomicBool>,
}

impl Monitor {
    fn run(mut self, events: &mut dyn FnMut(Event)) -> Pool {
        let start = self.received;
        let mut clock_start = start;
        let mut plan = self.limits.time_plan(self.config.move_overhead);
        let mut next_info = start + Duration::from_secs(1);
        let mut stopped_by: Option<StopReason> = None;
        let mut stopped_at = start;
        let mut eval_lost = false;
        // (new leaves, playouts) when the last new leaf was seen.
        let mut last_new = (0, 0);
        loop {
            std::thread::sleep(Duration::from_millis(2));
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if self.ponderhit.swap(false, Ordering::Relaxed) && self.limits.ponder {
                self.limits.ponder = false;
                clock_start = Instant::now();
                plan = self.limits.time_plan(self.config.move_overhead);
            }
            let mut progress = self.progress(clock_start);
            let new_leaves = self.pool.control.block().new_leaves.load(Ordering::Relaxed);
            if new_leaves != last_new.0 {
                last_new = (new_leaves, progress.playouts);
            }
            progress.playouts_since_new = progress.playouts - last_new.1;
            if stopped_by.is_none() {
                stopped_by = should_stop(&self.limits, plan, &progress)
                    .or_else(|| (self.pool.arena.hashfull() >= 995).then_some(StopReason::Nodes));
                if stopped_by.is_some() {
                    self.pool.control.block().request_stop();
                    stopped_at = Instant::now();
                }
            }
            let workers_idle = self.workers_idle();
            if !eval_lost && self.eval_failed() {
                eval_lost = true;
                events(Event::Error(
                    "the evaluator stopped answering; it restarts before the next search".into(),
                ));
                self.pool.control.block().request_stop();
            }
            // A search stopped by time, depth or a proof answers at once, whatever the
            // evaluator is doing; a node count waits for the playouts in flight to land (`go
            // nodes` is exact), but not for an evaluator that has stalled.
            let answer_now = match stopped_by {
                None => false,
                Some(StopReason::Nodes) => stopped_at.elapsed() >= NODES_GRACE,
                Some(_) => true,
            };
            // Ponder and infinite searches print their move only after stop or ponderhit.
            let may_finish = !(self.limits.infinite || self.limits.ponder);
            if (workers_idle || eval_lost || answer_now) && may_finish {
                break;
            }
            if Instant::now() >= next_info {
                next_info += Duration::from_secs(1);
                events(Event::Info(self.info(start)));
            }
        }
        // Answer from the tree as it stands (all atomics) at once, then let the workers
        // drain their minibatches: that wait must not come out of the clock.
        self.pool.control.block().request_stop();
        events(Event::Info(self.info(start)));
        if self.config.verbose_move_stats {
            events(Event::Verbose(report::verbose(
                &self.pool.arena,
                &self.position,
                self.pool.cache.as_deref(),
            )));
        }
        let (best, ponder) = report::best_move(&self.pool.arena, &self.position);
        // From here on the engine counts as idle: the GUI may change options at once.
        self.stop.store(true, Ordering::Relaxed);
        events(Event::BestMove { best, ponder });
        // Workers still waiting on the evaluator after this are killed: it has stalled, and
        // is replaced before the next search.
        let stalled = !self.wait_workers(DRAIN_TIMEOUT);
        if eval_lost || stalled || self.eval_failed() {
            self.evaluator_failed.store(true, Ordering::Relaxed);
        }
        self.pool
    }

    fn progress(&self, clock_start: Instant) -> Progress {
        let block = self.pool.control.block();
        let arena = &self.pool.arena;
        let root = arena.root();
        let mut visits: Vec<u64> = arena
            .children(root)
            .iter()
            .map(|c| c.visits as u64)
            .collect();
        visits.sort_unstable_by(|a, b| b.cmp(a));
        let playouts = block.done.load(Ordering::Relaxed);
        let proven = arena.proven(root);
        Progress {
            elapsed: clock_start.elapsed(),
            playouts,
            best_visits: visits.first().copied().unwrap_or(0),
            second_visits: visits.get(1).copied().unwrap_or(0),
            depth: report::average_depth(block),
            playouts_since_new: 0,
            proven_mate: proven
                .filter(|p| p.plies != banyan_tree::FAR_PLIES)
                .and_then(|p| match p.outcome {
                    banyan_tree::Outcome::Win => Some((p.plies as u32).div_ceil(2)),
                    _ => None,
                }),
            root_solved: proven.is_some(),
            root_moves: self.root_moves,
        }
    }

    fn info(&self, start: Instant) -> report::Info {
        let mut info = report::info(
            &self.pool.arena,
            self.pool.control.block(),
            &self.history,
            start.elapsed(),
            self.config.multipv,
            self.pool.cache.as_deref(),
        );
        if let Some(outcome) = self.tb_root {
            info.apply_tablebase(outcome);
        }
        info
    }

    /// Whether every worker is done with this search. A worker found dead has its in-flight
    /// descents, expansion claims and playout claims removed at once, so the others go on.
    fn workers_idle(&mut self) -> bool {
        let block = self.pool.control.block();
        let mut idle = true;
        for (id, w) in self.pool.workers.iter_mut().enumerate() {
            if block.is_done(id, self.search) {
                continue;
            }
            if w.is_alive() {
                idle = false;
            } else if !w.recovered {
                let removed = self.pool.arena.recover_worker(id as u32);
                block.forget_worker(id);
                w.recovered = true;
                tracing::warn!(
                    "worker {id} died during the search; removed {removed} in-flight descents"
                );
            }
        }
        idle
    }

    fn eval_failed(&self) -> bool {
        let block = self.pool.control.block();
        (0..self.pool.workers.len())
            .any(|id| block.workers[id].eval_error.load(Ordering::Relaxed) != 0)
    }

    /// Waits for every worker to go idle; one that does not within `timeout` is killed (and
    /// replaced before the next search). Returns whether all went idle by themselves.
    fn wait_workers(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.workers_idle() {
            if Instant::now() >= deadline {
                let block = self.pool.control.block();
                for (id, w) in self.pool.workers.iter_mut().enumerate() {
                    if !block.is_done(id, self.search) {
                        tracing::error!("worker {id} did not stop; killing it");
                        w.kill();
                    }
                }
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }
}
