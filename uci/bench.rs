//! `banyan bench`: a fixed search over a fixed set of positions, for comparing speed; with
//! `--game`, fixed real games replayed ply by ply with tree reuse, as games are played.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use banyan_engine::{Engine, Event, GamePosition, GoRequest, Info, Limits};

use banyan_nn::builtin::Weights;
use banyan_nn::network::Precision;

use crate::options::Options;

/// Opening, middlegame and endgame positions (the set never changes, so figures compare).
const POSITIONS: &[&str] = &[
    "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
    "rnbqkbnr/pppp1ppp/8/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R b KQkq - 1 2",
    "r1bqkb1r/pppp1ppp/2n2n2/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4",
    "rnbqkb1r/pp2pppp/3p1n2/8/3NP3/8/PPP2PPP/RNBQKB1R w KQkq - 1 5",
    "r1bq1rk1/ppp2ppp/2np1n2/2b1p3/2B1P3/2NP1N2/PPP2PPP/R1BQ1RK1 w - - 0 7",
    "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1",
    "r4rk1/1pp1qppp/p1np1n2/2b1p1B1/2B1P1b1/P1NP1N2/1PP1QPPP/R4RK1 w - - 0 10",
    "2rq1rk1/pp1bppbp/3p1np1/4n3/3NP3/1BN1BP2/PPPQ2PP/2KR3R w - - 9 12",
    "r1b2rk1/2q1b1pp/p2ppn2/1p6/3QP3/1BN1B3/PPP3PP/R4RK1 w - - 0 14",
    "4rrk1/pp1n3p/3q2pQ/2p1pb2/2PP4/2P3N1/P2B2PP/4RRK1 b - - 7 19",
    "r3r1k1/2p2ppp/p1p1bn2/8/1q2P3/2NPQN2/PPP3PP/R4RK1 b - - 2 15",
    "r1bbk1nr/pp3p1p/2n5/1N4p1/2Np1B2/8/PPP2PPP/2KR1B1R w kq - 0 13",
    "r1bq1r1k/b1p1npp1/p2p3p/1p6/3PP3/1B2NN2/PP3PPP/R2Q1RK1 w - - 1 16",
    "3r1rk1/p5pp/bpp1pp2/8/q1PP1P2/b3P3/P2NQRPP/1R2B1K1 b - - 6 22",
    "r1q2rk1/2p1bppp/2Pp4/p6b/Q1PNp3/4B3/PP1R1PPP/2K4R w - - 2 18",
    "6k1/6p1/6Pp/ppp5/3pn2P/1P3K2/1PP2P2/3N4 b - - 0 1",
    "3b4/5kp1/1p1p1p1p/pP1PpP1P/P1P1P3/3KN3/8/8 w - - 0 1",
    "8/8/8/8/5kp1/P7/8/1K1N4 w - - 0 1",
    "8/5k2/8/5N2/5Q2/2K5/8/8 w - - 0 1",
    "8/8/1p1r1k2/p1pPN1p1/P3KnP1/1P6/8/3R4 b - - 0 1",
];

/// The games of `bench --game` (and of `scripts/measure` for Lc0): `<FEN> | <moves>` lines.
const GAMES: &str = include_str!("../data/bench/games.txt");

/// An engine with `threads` workers and the evaluator `weights` computing in `precision`,
/// ready.
fn engine(weights: Weights, threads: u32, precision: Precision) -> Result<Engine, String> {
    let mut options = Options::default();
    options.set("Threads", crate::options::Value::Int(threads as i64));
    let mut config = crate::session::engine_config(&options);
    config.weights = weights;
    config.precision = precision;
    let mut engine = Engine::new(crate::own_exe());
    engine.configure(config)?;
    engine.ready()?;
    Ok(engine)
}

/// Runs `go nodes <nodes>` on `position`; returns the last info and the time from `go` to
/// `bestmove`.
fn search(
    engine: &mut Engine,
    position: GamePosition,
    nodes: u64,
) -> Result<(Info, Duration), String> {
    let (tx, rx) = mpsc::channel();
    let limits = Limits {
        nodes: Some(nodes),
        ..Limits::default()
    };
    let started = Instant::now();
    engine.go(
        position,
        GoRequest {
            limits,
            searchmoves: Vec::new(),
        },
        Box::new(move |e| {
            let _ = tx.send(e);
        }),
    );
    let mut last = None;
    for event in rx {
        match event {
            Event::Info(info) => last = Some(info),
            Event::Error(e) => return Err(e),
            Event::BestMove { .. } => break,
            Event::Verbose(_) => {}
        }
    }
    let took = started.elapsed();
    engine.wait();
    Ok((last.ok_or("no info from the search")?, took))
}

/// Searches every position for `nodes` playouts from a fresh tree and prints the totals.
pub fn run(weights: Weights, nodes: u64, threads: u32, precision: Precision) -> Result<(), String> {
    let mut engine = engine(weights, threads, precision)?;
    println!(
        "bench: {} nodes per position, {threads} worker(s), evaluator: {}",
        nodes,
        engine.evaluator_description().unwrap_or("?")
    );
    let (mut total_nodes, mut total_bytes) = (0u64, 0u64);
    let mut cache_hit_rate = None;
    let started = Instant::now();
    for (i, fen) in POSITIONS.iter().enumerate() {
        let position = GamePosition::parse(Some(fen), &[] as &[&str], false)?;
        engine.new_game();
        let (info, _) = search(&mut engine, position, nodes)?;
        total_nodes += info.nodes;
        total_bytes += info.tree_bytes;
        cache_hit_rate = info.cache_hit_rate;
        println!(
            "position {:>2}: nodes {:>8}  time {:>6} ms  nps {:>7}  {fen}",
            i + 1,
            info.nodes,
            info.time.as_millis(),
            info.nps
        );
    }
    let ms = started.elapsed().as_millis().max(1) as u64;
    if let Some(rate) = cache_hit_rate {
        println!("NNCache hit rate: {:.1}%", rate * 100.0);
    }
    println!(
        "Total nodes: {total_nodes}  Time: {ms} ms  Nodes/second: {}  Bytes/node: {}",
        total_nodes * 1000 / ms,
        total_bytes / total_nodes.max(1)
    );
    Ok(())
}

/// Replays the fixed games ply by ply in one engine (the tree is kept between plies, as in a
/// game), `go nodes <nodes>` at every ply, and prints new nodes per second of wall time from
/// `go` to `bestmove`, the median time per move, the cache hit rate and the mean minibatch.
pub fn run_games(
    weights: Weights,
    nodes: u64,
    threads: u32,
    precision: Precision,
) -> Result<(), String> {
    let mut engine = engine(weights, threads, precision)?;
    println!(
        "bench --game: go nodes {nodes} at every ply, {threads} worker(s), evaluator: {}",
        engine.evaluator_description().unwrap_or("?")
    );
    let (mut total_nodes, mut total_time) = (0u64, Duration::ZERO);
    let (mut batches, mut hits) = (Vec::new(), Vec::new());
    let mut times = Vec::new();
    for (g, line) in GAMES.lines().filter(|l| !l.starts_with('#')).enumerate() {
        let (fen, moves) = line.split_once('|').ok_or("a bench game without '|'")?;
        let moves: Vec<&str> = moves.split_whitespace().collect();
        engine.new_game();
        let (mut game_nodes, mut game_time) = (0u64, Duration::ZERO);
        for ply in 0..moves.len() {
            let position = GamePosition::parse(Some(fen.trim()), &moves[..ply], false)?;
            let (info, took) = search(&mut engine, position, nodes)?;
            game_nodes += info.nodes;
            game_time += took;
            times.push(took);
            batches.extend(info.mean_minibatch);
            hits.extend(info.cache_hit_rate);
        }
        println!(
            "game {}: {} plies, new nodes {game_nodes}, time {} ms, nodes/s {}",
            g + 1,
            moves.len(),
            game_time.as_millis(),
            game_nodes * 1000 / game_time.as_millis().max(1) as u64
        );
        total_nodes += game_nodes;
        total_time += game_time;
    }
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "Game nodes/second: {}  Median time/move: {} ms  Moves: {}  NNCache hit rate: {:.1}%  Mean minibatch: {:.1}",
        total_nodes * 1000 / total_time.as_millis().max(1) as u64,
        median.as_millis(),
        times.len(),
        hits.last().copied().unwrap_or(0.0) * 100.0,
        mean(&batches)
    );
    Ok(())
}
