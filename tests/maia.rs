//! Searching with real Lc0 networks (../shared/nets): short mates are found, and at 100
//! nodes the engine prefers the move Lc0 prefers on the reference positions. The nets are
//! third-party files beside the checkout, not in the repository: without them these tests
//! report themselves skipped.

mod common;

use common::{Engine, bestmove_of, last_search_info, move_stat, net, shared_nets_or_skip};

/// Sets `WeightsFile` to the third-party net `name` and checks the engine says it is in use.
fn use_net(engine: &mut Engine, name: &str) {
    engine.send(&format!("setoption name WeightsFile value {}", net(name)));
    engine.send("isready");
    let lines = engine.read_until("readyok");
    let stem = name.trim_end_matches(".pb.gz");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("info string evaluator: {stem}: "))),
        "{name} not in use: {lines:?}"
    );
}

#[test]
fn maia_finds_mate_in_two() {
    if !shared_nets_or_skip("maia::maia_finds_mate_in_two", &["maia-1900.pb.gz"]) {
        return;
    }
    // Each has exactly one mating first move (checked with Stockfish, MultiPV 3). A queen
    // sacrifice with a 0.17% prior (r1b2k1r/ppp1bppp/8/1B1Q4/5q2/2P5/PPP2PPP/R3R1K1 w, d5d8)
    // needs about 10000 nodes, as it would in Lc0; it is not among these.
    let cases = [
        (
            "r2qkb1r/pp2nppp/3p4/2pNN1B1/2BnP3/3P4/PPP2PPP/R2bK2R w KQkq - 1 10",
            "d5f6",
        ),
        ("6k1/pp4p1/2p5/2bp4/8/P5Pb/1P3rrP/2BRRN1K b - - 0 1", "g2g1"),
        // The same two with colours swapped.
        (
            "r2Bk2r/ppp2ppp/3p4/2bNp3/2Pnn1b1/3P4/PP2NPPP/R2QKB1R b KQkq - 1 10",
            "d4f3",
        ),
        ("2brrn1k/1p3RRp/p5pB/8/2BP4/2P5/PP4P1/6K1 w - - 0 1", "g7g8"),
    ];
    let mut engine = Engine::start();
    use_net(&mut engine, "maia-1900.pb.gz");
    for (fen, mate) in cases {
        engine.send(&format!("position fen {fen}"));
        engine.send("go nodes 2000");
        let lines = engine.read_until("bestmove");
        assert_eq!(bestmove_of(&lines).0, mate, "{fen}: {lines:?}");
        let info = last_search_info(&lines);
        assert!(info.contains("score mate 2 "), "{fen}: {info}");
    }
    engine.quit();
}

#[test]
fn at_100_nodes_the_move_lc0_prefers() {
    let nets = ["maia-1900.pb.gz", "meangirl-8.pb.gz"];
    if !shared_nets_or_skip("maia::at_100_nodes_the_move_lc0_prefers", &nets) {
        return;
    }
    // From ../shared/ref/lc0-*-reference.txt (`go nodes 100`).
    let cases = [
        ("maia-1900.pb.gz", "position startpos", "e2e4"),
        (
            "maia-1900.pb.gz",
            "position startpos moves e2e4 e7e5 g1f3",
            "b8c6",
        ),
        ("meangirl-8.pb.gz", "position startpos", "e2e4"),
        (
            "meangirl-8.pb.gz",
            "position startpos moves e2e4 e7e5 g1f3",
            "b8c6",
        ),
    ];
    let mut engine = Engine::start();
    // One worker, as Lc0's reference run had one thread: its search is deterministic.
    engine.send("setoption name Threads value 1");
    // And in fp32, as Lc0's BLAS backend computes.
    engine.send("setoption name Precision value fp32");
    for (weights, position, lc0) in cases {
        use_net(&mut engine, weights);
        engine.send("ucinewgame");
        engine.send(position);
        engine.send("go nodes 100");
        let lines = engine.read_until("bestmove");
        assert!(
            !lines.iter().any(|l| l.starts_with("info string error")),
            "{lines:?}"
        );
        assert_eq!(
            bestmove_of(&lines).0,
            lc0,
            "{weights} {position}: {lines:?}"
        );
    }
    engine.quit();
}

#[test]
fn at_800_playouts_the_visits_lc0_gives() {
    if !shared_nets_or_skip(
        "maia::at_800_playouts_the_visits_lc0_gives",
        &["maia-1900.pb.gz"],
    ) {
        return;
    }
    // Lc0 v0.33-dev (`../shared/bin/lc0`, BLAS, maia-1900, `Threads 1`, `MinibatchSize 1`, `NodesAsPlayouts true`,
    // `SmartPruningFactor 0`, `go nodes 800`): the root visits of its most visited moves, from
    // `VerboseMoveStats`. The same selection rule (CPuct and its growth, FPU reduction over
    // the visited policy, the policy temperature, the in-flight term) gives the same visits up
    // to the float rounding of two different network passes.
    let cases: [(&str, &[(&str, i32)]); 4] = [
        (
            "position startpos",
            &[
                ("e2e4", 311),
                ("d2d4", 228),
                ("g1f3", 83),
                ("c2c4", 76),
                ("f2f4", 20),
            ],
        ),
        (
            "position startpos moves e2e4 e7e5 g1f3 b8c6 f1b5 a7a6",
            &[("b5a4", 592), ("b5c6", 194), ("b5c4", 9), ("b5e2", 5)],
        ),
        (
            "position fen r1bqkb1r/pp2pppp/2np4/3nP3/3P4/5N2/PP3PPP/RNBQKB1R w KQkq - 0 7",
            &[
                ("b1c3", 341),
                ("f1c4", 237),
                ("e5d6", 95),
                ("f1e2", 34),
                ("f1b5", 24),
            ],
        ),
        (
            "position fen 8/5pk1/6p1/3P4/2K5/8/5PP1/8 w - - 0 40",
            &[("c4c5", 541), ("d5d6", 134), ("c4d4", 78), ("c4b5", 20)],
        ),
    ];
    let mut engine = Engine::start();
    engine.send("setoption name Threads value 1");
    engine.send("setoption name MinibatchSize value 1");
    engine.send("setoption name Precision value fp32");
    engine.send("setoption name VerboseMoveStats value true");
    use_net(&mut engine, "maia-1900.pb.gz");
    for (position, lc0) in cases {
        engine.send("ucinewgame");
        engine.send(position);
        engine.send("go nodes 800");
        let lines = engine.read_until("bestmove");
        assert_eq!(bestmove_of(&lines).0, lc0[0].0, "{position}: {lines:?}");
        for &(mv, visits) in lc0 {
            let ours =
                move_stat(&lines, mv, "N:").unwrap_or_else(|| panic!("{mv}: {lines:?}")) as i32;
            assert!(
                (ours - visits).abs() <= 3 + visits / 50,
                "{position}: {mv} has {ours} visits, Lc0 gives it {visits}: {lines:?}"
            );
        }
    }
    engine.quit();
}
