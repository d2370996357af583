//! Banyan's own network, compiled into the binary, is the default (`<default>`, or `<builtin>`
//! by name) and plays with no file beside it; `<heuristic>` selects the heuristic, and a GUI
//! sees which evaluator is in use.

mod common;

use common::{
    Engine, bestmove_of, info_field, is_legal, last_search_info, prior_difference, priors,
};

/// The `info string evaluator: …` line that answers `setoption name WeightsFile value …`.
fn evaluator_after(engine: &mut Engine, value: &str) -> String {
    evaluator_after_option(engine, "WeightsFile", value)
}

/// The `info string evaluator: …` line that answers `setoption name <option> value <value>`.
fn evaluator_after_option(engine: &mut Engine, option: &str, value: &str) -> String {
    engine.send(&format!("setoption name {option} value {value}"));
    engine.send("isready");
    let lines = engine.read_until("readyok");
    lines
        .iter()
        .find(|l| l.starts_with("info string evaluator:"))
        .unwrap_or_else(|| panic!("{option} {value}: no evaluator line in {lines:?}"))
        .clone()
}

/// A started engine whose `uci` answer declares `option`'s default as `default`, set up so
/// that [`priors`] reads the root's priors (verbose statistics, one worker).
fn engine_reading_priors(option: &str, default: &str) -> Engine {
    let mut engine = Engine::start();
    engine.send("uci");
    let lines = engine.read_until("uciok");
    let declared = format!("option name {option} type string default {default}");
    assert!(lines.contains(&declared), "{lines:?}");
    engine.send("setoption name VerboseMoveStats value true");
    engine.send("setoption name Threads value 1");
    engine
}

#[test]
fn the_built_in_network_is_the_default_and_plays() {
    let mut engine = engine_reading_priors("WeightsFile", "<default>");
    // A search with no option set runs on the built-in network: the same search after
    // selecting `<builtin>` explicitly gives the same root priors, and the heuristic's differ.
    let position = "position startpos moves e2e4";
    let stats = |engine: &mut Engine| {
        let root = priors(engine, position);
        assert_eq!(root.len(), 20, "{root:?}");
        root
    };
    // Two sets of root priors, in percent, that differ by no more than batching's rounding.
    let same = |a, b| prior_difference(a, b) <= 0.02;
    let by_default = stats(&mut engine);
    let builtin = evaluator_after(&mut engine, "<builtin>");
    assert!(builtin.contains("banyan (built in)"), "{builtin}");
    let explicit = stats(&mut engine);
    assert!(
        same(&explicit, &by_default),
        "the default is not the built-in network: {by_default:?} {explicit:?}"
    );
    let heuristic = evaluator_after(&mut engine, "<heuristic>");
    assert!(heuristic.contains("heuristic"), "{heuristic}");
    let hand_written = stats(&mut engine);
    assert!(
        !same(&hand_written, &by_default),
        "the heuristic gave the built-in network's priors: {hand_written:?}"
    );
    // `<default>` names the default evaluator.
    let default = evaluator_after(&mut engine, "<default>");
    assert!(default.contains("banyan (built in)"), "{default}");

    // And a full search on the built-in network, with a score before `bestmove`.
    evaluator_after(&mut engine, "<builtin>");
    engine.send("setoption name VerboseMoveStats value false");
    engine.send("position startpos");
    engine.send("go nodes 300");
    let lines = engine.read_until("bestmove");
    let last = last_search_info(&lines);
    assert_eq!(info_field(last, "nodes").as_deref(), Some("300"), "{last}");
    assert!(info_field(last, "score").is_some(), "{last}");
    assert!(is_legal(None, &[], &bestmove_of(&lines).0));
    engine.quit();
}

/// `PolicyTemperature` defaults to `<auto>`: the built-in network's own 1.0, which an explicit
/// 1.0 reproduces and Lc0's 1.359 flattens; `<auto>` sets it back.
#[test]
fn the_policy_temperature_is_the_networks_own_unless_set() {
    let mut engine = engine_reading_priors("PolicyTemperature", "<auto>");
    let position = "position startpos";
    let auto = priors(&mut engine, position);
    // The evaluator line names the temperature in use.
    let mut priors_at = |value: &str, named: &str| {
        let line = evaluator_after_option(&mut engine, "PolicyTemperature", value);
        assert!(line.ends_with(named), "{value}: {line}");
        priors(&mut engine, position)
    };
    let lc0 = priors_at("1.359", "policy temperature 1.359");
    let one = priors_at("1.0", "policy temperature 1");
    engine.send("setoption name PolicyTemperature value <auto>");
    let back = priors(&mut engine, position);
    let same = |a, b| prior_difference(a, b) <= 0.02;
    assert!(same(&auto, &one), "<auto> is not 1.0: {auto:?} {one:?}");
    assert!(
        same(&back, &auto),
        "<auto> set back differs: {back:?} {auto:?}"
    );
    let top = |p: &std::collections::BTreeMap<String, f32>| p.values().copied().fold(0.0, f32::max);
    assert!(
        top(&lc0) < top(&one) - 1.0,
        "1.359 did not flatten the priors: {lc0:?} {one:?}"
    );
    engine.quit();
}

/// `Precision` picks what the network computes in, the evaluator line says which, and
/// bfloat16's root priors stay within a percentage point of fp32's.
#[test]
fn precision_is_chosen_by_option_and_bf16_stays_close() {
    let mut engine = Engine::start();
    engine.send("setoption name VerboseMoveStats value true");
    engine.send("setoption name Threads value 1");
    // `auto` computes in bf16 only with AMX: an option naming what is already in use changes
    // no evaluator and so prints no new line.
    let auto = evaluator_after(&mut engine, "<builtin>");
    let position = "position startpos moves d2d4 g8f6";
    let fp32 = if auto.contains("(bf16)") {
        evaluator_after_option(&mut engine, "Precision", "fp32")
    } else {
        auto
    };
    assert!(!fp32.contains("bf16"), "{fp32}");
    let exact = priors(&mut engine, position);
    let bf16 = evaluator_after_option(&mut engine, "Precision", "bf16");
    assert!(bf16.contains("(bf16)"), "{bf16}");
    let reduced = priors(&mut engine, position);
    assert_eq!(exact.len(), reduced.len(), "{exact:?} {reduced:?}");
    let gap = prior_difference(&exact, &reduced);
    assert!(gap <= 1.0, "{gap} points apart: {exact:?} {reduced:?}");
    let back = evaluator_after_option(&mut engine, "Precision", "fp32");
    assert!(!back.contains("bf16"), "{back}");
    engine.quit();
}
