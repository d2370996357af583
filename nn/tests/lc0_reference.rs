//! Reproduces Lc0's `VerboseMoveStats` output (`shared/ref/lc0-*-reference.txt`): every prior
//! within 0.1 percentage points, the root value (W−L) within 0.002, the same policy indices.
//!
//! The nets (Maia, meangirl) and Lc0's output are third-party files kept in `../shared` beside
//! the checkout, not in the repository: without them these tests report themselves skipped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use banyan_nn::backend::{Backend, EvalInput, RawEval};
use banyan_nn::encode::PositionHistory;
use banyan_nn::network::Network;
use banyan_nn::policy::{for_each_legal_move, move_index, parse_uci_move, uci_move};
use banyan_nn::priors::{DEFAULT_POLICY_TEMPERATURE, softmax_priors};
use banyan_nn::weights::{self, Activation, Architecture, Encoding, NetWeights};
use cozy_chess::Board;

const MAX_PRIOR_DIFF_PERCENT: f32 = 0.1;
const MAX_VALUE_DIFF: f32 = 0.002;

fn shared(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(path)
}

/// The Lc0 nets and Lc0's output on them.
const LC0_FILES: &[&str] = &[
    "nets/maia-1900.pb.gz",
    "nets/maia-1100.pb.gz",
    "nets/meangirl-8.pb.gz",
    "ref/lc0-maia-1900-reference.txt",
    "ref/lc0-meangirl-8-reference.txt",
];

/// Whether the `needed` files of ../shared are there; if not, reports `test` as skipped: one
/// line `<test>: <reason>` to stderr and to the file named by `BANYAN_SKIP_LOG` (which
/// `scripts/test` counts), and the test returns.
fn lc0_files_or_skip(test: &str, needed: &[&str]) -> bool {
    let Some(missing) = needed.iter().find(|path| !shared(path).is_file()) else {
        return true;
    };
    let line = format!("lc0_reference::{test}: no ../shared/{missing} (third-party Lc0 files)\n");
    eprint!("{line}");
    if let Some(log) = std::env::var_os("BANYAN_SKIP_LOG") {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("append to BANYAN_SKIP_LOG");
    }
    false
}

#[test]
fn loads_the_lc0_nets() {
    if !lc0_files_or_skip("loads_the_lc0_nets", LC0_FILES) {
        return;
    }
    let cases = [
        ("maia-1900", "6x64 SE, conv policy, WDL", 8),
        ("maia-1100", "6x64 SE, conv policy, WDL", 8),
        ("meangirl-8", "4x32 SE, conv policy, classical value", 16),
    ];
    for (name, description, se_width) in cases {
        let net = weights::load(&shared(&format!("nets/{name}.pb.gz"))).unwrap();
        assert_eq!(net.describe(), description, "{name}");
        assert_eq!(
            net.residual[0].se.as_ref().unwrap().fc1.outputs,
            se_width,
            "{name}"
        );
        assert_eq!(net.activation, Activation::Relu);
    }
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
    if !lc0_files_or_skip("reproduces_lc0_verbose_move_stats", LC0_FILES) {
        return;
    }
    let cases = [("maia-1900", 2), ("meangirl-8", 2)];
    for (net, positions) in cases {
        let mut network =
            Network::load(&shared(&format!("nets/{net}.pb.gz")), tch::Device::Cpu).expect("load");
        let text =
            std::fs::read_to_string(shared(&format!("ref/lc0-{net}-reference.txt"))).unwrap();
        let reference = parse_reference(&text);
        assert_eq!(reference.len(), positions, "{net}: go nodes 1 blocks");
        for expected in reference {
            compare(net, &mut network, &expected);
        }
    }
}

/// Lc0 itself reads the nets the project writes (every head and tower kind, both encodings)
/// and its priors and value on them are the ones this crate computes.
#[test]
fn lc0_reads_written_nets() {
    if !lc0_files_or_skip("lc0_reads_written_nets", &["bin/lc0"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("banyan-lc0-written-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = |se: bool, conv_policy: bool, wdl: bool, activation: Activation| Architecture {
        se_channels: se.then_some(2),
        conv_policy,
        policy_channels: 4,
        wdl,
        value_channels: 4,
        value_hidden: 16,
        activation,
        ..Architecture::new(2, 8)
    };
    let kinds = [
        tiny(true, true, true, Activation::Relu),
        tiny(false, false, false, Activation::Relu),
        tiny(true, false, true, Activation::Mish),
        tiny(false, true, false, Activation::Mish),
    ];
    let positions = ["startpos", "startpos moves e2e4 e7e5 g1f3"];
    // Lc0 reads the file at `path`, and `network` (Banyan's reading of it) agrees.
    let agree = |path: &Path, network: &mut Network, name: &str| {
        let text = lc0_verbose_stats(path, &positions);
        let reference = parse_reference(&text);
        assert_eq!(reference.len(), positions.len(), "{text}");
        for expected in &reference {
            compare(name, network, expected);
        }
    };
    for (seed, arch) in kinds.iter().enumerate() {
        for encoding in [Encoding::Linear16, Encoding::Float16] {
            let path = dir.join(format!("net{seed}-{encoding:?}.pb.gz"));
            weights::save(&NetWeights::random(arch, seed as u64), &path, encoding).unwrap();
            let mut network = Network::load(&path, tch::Device::Cpu).expect("load");
            let name = format!("{} {encoding:?}", network.describe());
            agree(&path, &mut network, &name);
        }
    }
    // Banyan's own built-in network, as committed.
    let path = dir.join("builtin.pb.gz");
    std::fs::write(&path, banyan_nn::builtin::NETWORK).unwrap();
    let mut network = Network::load_builtin(tch::Device::Cpu).expect("the built-in network");
    let name = network.describe();
    agree(&path, &mut network, &name);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Lc0's `VerboseMoveStats` after `go nodes 1` on each position, in the reference files' layout.
fn lc0_verbose_stats(weights: &Path, positions: &[&str]) -> String {
    let mut lc0 = Command::new(shared("bin/lc0"))
        .arg(format!("--weights={}", weights.display()))
        .args(["--backend=blas", "--threads=1", "--verbose-move-stats"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lc0");
    let mut stdin = lc0.stdin.take().unwrap();
    let mut lines = BufReader::new(lc0.stdout.take().unwrap()).lines();
    let mut text = String::new();
    for position in positions {
        writeln!(stdin, "position {position}\ngo nodes 1").unwrap();
        text.push_str(&format!(">> position {position}\n>> go nodes 1\n"));
        loop {
            let line = lines.next().expect("lc0 answers").unwrap();
            text.push_str(&line);
            text.push('\n');
            assert!(
                !line.contains("rror"),
                "lc0 on {}: {line}",
                weights.display()
            );
            if line.starts_with("bestmove") {
                break;
            }
        }
    }
    writeln!(stdin, "quit").unwrap();
    lc0.wait().unwrap();
    text
}

/// Checks `network`'s priors, policy indices and value on `expected`'s position against Lc0's.
fn compare(net: &str, network: &mut Network, expected: &Expected) {
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
    network
        .evaluate(
            &[EvalInput {
                planes: &planes,
                moves: &indices,
            }],
            &mut out,
        )
        .unwrap();
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
