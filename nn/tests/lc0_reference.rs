//! Reproduces Lc0's `VerboseMoveStats` output (`shared/ref/lc0-*-reference.txt`): every prior
//! within 0.1 percentage points, the root value (W−L) within 0.002, the same policy indices.

use std::collections::HashMap;
use std::path::PathBuf;

use banyan_nn::backend::{Backend, EvalInput, RawEval};
use banyan_nn::encode::PositionHistory;
use banyan_nn::network::Network;
use banyan_nn::policy::{for_each_legal_move, move_index, parse_uci_move, uci_move};
use banyan_nn::priors::{DEFAULT_POLICY_TEMPERATURE, softmax_priors};
use cozy_chess::Board;

const MAX_PRIOR_DIFF_PERCENT: f32 = 0.1;
const MAX_VALUE_DIFF: f32 = 0.002;

fn shared(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(path)
}

/// What Lc0 printed after `go nodes 1` for one position.
struct Expected {
    /// `position …` command text after "position ".
    position: String,
    /// Move (king-takes-rook UCI) → (policy index, prior in percent).
    moves: HashMap<String, (u16, f32)>,
    /// The node line's `V:`.
    value: f32,
}

/// The text between `(label:` and the next `)` of a verbose line.
fn field<'a>(line: &'a str, label: &str) -> &'a str {
    let start = line.find(&format!("({label}")).expect(label) + label.len() + 1;
    let end = start + line[start..].find(')').expect("closing parenthesis");
    line[start..end].trim()
}

/// Parses the `go nodes 1` blocks of a reference file.
fn parse_reference(text: &str) -> Vec<Expected> {
    let mut result = Vec::new();
    let mut position = String::new();
    let mut current: Option<Expected> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(">> position ") {
            position = rest.to_string();
        } else if line == ">> go nodes 1" {
            current = Some(Expected {
                position: position.clone(),
                moves: HashMap::new(),
                value: f32::NAN,
            });
        } else if let Some(expected) = current.as_mut() {
            if let Some(rest) = line.strip_prefix("info string ") {
                let mv = rest.split_whitespace().next().expect("move");
                if mv == "node" {
                    expected.value = field(line, "V:").parse().expect("V:");
                } else {
                    let index = rest[mv.len()..].trim_start().trim_start_matches('(');
                    let index: u16 = index
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .trim_end_matches(')')
                        .parse()
                        .unwrap();
                    let prior: f32 = field(line, "P:").trim_end_matches('%').parse().expect("P:");
                    expected.moves.insert(mv.to_string(), (index, prior));
                }
            } else if line.starts_with("bestmove") {
                result.push(current.take().unwrap());
            }
        }
    }
    result
}

/// Replays `startpos [moves …]` into a history.
fn history_of(position: &str) -> PositionHistory {
    let mut words = position.split_whitespace();
    assert_eq!(words.next(), Some("startpos"));
    let mut history = PositionHistory::new(Board::default());
    if words.next() == Some("moves") {
        for text in words {
            let mv = parse_uci_move(history.current(), text, false).expect("legal move");
            history.push(mv);
        }
    }
    history
}

#[test]
fn reproduces_lc0_verbose_move_stats() {
    let cases = [("maia-1900", 2), ("meangirl-8", 2)];
    for (net, positions) in cases {
        let mut network =
            Network::load(&shared(&format!("nets/{net}.pb.gz")), tch::Device::Cpu).expect("load");
        let text =
            std::fs::read_to_string(shared(&format!("ref/lc0-{net}-reference.txt"))).unwrap();
        let reference = parse_reference(&text);
        assert_eq!(reference.len(), positions, "{net}: go nodes 1 blocks");
        for expected in reference {
            let history = history_of(&expected.position);
            let board = history.current();
            let mut moves = Vec::new();
            for_each_legal_move(board, |mv| moves.push(mv));
            let indices: Vec<u16> = moves
                .iter()
                .map(|&mv| move_index(mv, board.side_to_move()))
                .collect();
            let planes = history.planes();
            let mut out = Vec::new();
            network.evaluate(
                &[EvalInput {
                    planes: &planes,
                    moves: &indices,
                }],
                &mut out,
            );
            let RawEval { wdl, logits } = &out[0];
            let mut priors = Vec::new();
            softmax_priors(logits, DEFAULT_POLICY_TEMPERATURE, &mut priors);

            assert_eq!(
                moves.len(),
                expected.moves.len(),
                "{net} {}: legal move count",
                expected.position
            );
            let mut worst_prior = 0f32;
            for ((mv, index), prior) in moves.iter().zip(&indices).zip(&priors) {
                let text = uci_move(board, *mv, true);
                let &(lc0_index, lc0_prior) = expected
                    .moves
                    .get(&text)
                    .unwrap_or_else(|| panic!("{text} not in reference"));
                assert_eq!(
                    *index, lc0_index,
                    "{net} {}: index of {text}",
                    expected.position
                );
                let diff = (prior * 100.0 - lc0_prior).abs();
                assert!(
                    diff <= MAX_PRIOR_DIFF_PERCENT,
                    "{net} {}: {text} prior {:.3}% vs lc0 {lc0_prior}%",
                    expected.position,
                    prior * 100.0
                );
                worst_prior = worst_prior.max(diff);
            }
            let value = wdl[0] - wdl[2];
            let value_diff = (value - expected.value).abs();
            assert!(
                value_diff <= MAX_VALUE_DIFF,
                "{net} {}: value {value} vs lc0 {}",
                expected.position,
                expected.value
            );
            eprintln!(
                "{net} [{}]: worst prior diff {worst_prior:.4} pp, value {value:.4} vs {} (diff {value_diff:.5}), wdl {wdl:?}",
                expected.position, expected.value
            );
        }
    }
}
