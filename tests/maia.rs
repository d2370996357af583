//! Searching with real Lc0 networks (../shared/nets): short mates are found, and at 100
//! nodes the engine prefers the move Lc0 prefers on the reference positions. The nets are
//! third-party files beside the checkout, not in the repository: without them these tests
//! report themselves skipped.

mod common;

use common::{Engine, bestmove_of, last_search_info, net, shared_nets_or_skip};

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
