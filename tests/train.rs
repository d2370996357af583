//! `banyan train` through the real binary: bad input fails cleanly; a small run on made-up
//! labelled games prints its figures, writes a net the loader reads, resumes and starts from a
//! net.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use banyan_nn::train::record::{ChunkWriter, GameRecord, Label, Outcome, cp_score};
use cozy_chess::{Board, Move};

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banyan"))
        .arg("train")
        .args(["--threads", "1", "--cpu"])
        .args(args)
        .output()
        .expect("run banyan train")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("banyan-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `games` random games of 30 plies, every position labelled with its first legal moves.
fn write_games(dir: &Path, games: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = fastrand_like(7);
    let mut writer = ChunkWriter::new();
    for _ in 0..games {
        let mut board = Board::default();
        let (mut moves, mut labels) = (Vec::new(), Vec::new());
        for ply in 0..30 {
            let mut legal: Vec<Move> = Vec::new();
            board.generate_moves(|m| {
                legal.extend(m);
                false
            });
            if legal.is_empty() {
                break;
            }
            let lines = legal
                .iter()
                .take(3)
                .zip([cp_score(30), cp_score(0), cp_score(-30)])
                .map(|(&m, s)| (m, s))
                .collect();
            labels.push((
                ply,
                Label {
                    wdl: [400, 300, 300],
                    lines,
                    best: 0,
                },
            ));
            let mv = legal[rng() % legal.len()];
            board.play(mv);
            moves.push(mv);
        }
        let game = GameRecord {
            start: Board::default(),
            moves,
            labels,
            outcome: Outcome::Unknown,
        };
        writer.push(&game).unwrap();
    }
    writer
        .write_atomic(&dir.join("chunk-000000.bin.gz"))
        .unwrap();
}

/// A tiny seeded generator (xorshift), so the test needs no extra crate.
fn fastrand_like(seed: u64) -> impl FnMut() -> usize {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as usize
    }
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let dir = temp_dir("train-bad");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::create_dir_all(dir.join("corrupt")).unwrap();
    std::fs::write(dir.join("corrupt/chunk-000000.bin.gz"), b"not gzip").unwrap();
    std::fs::write(dir.join("notanet.pb.gz"), b"not a net").unwrap();
    write_games(&dir.join("good"), 4);
    let out = dir.join("net.pb.gz");
    let out = out.to_str().unwrap();
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let (empty, corrupt, good, notanet) = (
        path("empty"),
        path("corrupt"),
        path("good"),
        path("notanet.pb.gz"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--data", "/nonexistent/labels", "--out", out],
            "cannot read",
        ),
        (vec!["--data", &empty, "--out", out], "no chunk files"),
        (
            vec!["--data", &corrupt, "--out", out],
            "chunk-000000.bin.gz",
        ),
        (
            vec!["--data", &good, "--out", out, "--blocks", "0"],
            "--blocks",
        ),
        (
            vec!["--data", &good, "--out", out, "--epochs", "0"],
            "epochs",
        ),
        (
            vec!["--data", &good, "--out", out, "--lr=-1"],
            "learning rate",
        ),
        (
            vec!["--data", &good, "--out", out, "--encoding", "int8"],
            "--encoding",
        ),
        (
            vec!["--data", &good, "--out", out, "--init", &notanet],
            "gzip",
        ),
        (
            vec!["--data", &good, "--out", "/nonexistent/dir/net.pb.gz"],
            "cannot write",
        ),
        (vec!["--data", &good], "--out"),
    ];
    for (args, expected) in cases {
        let output = train(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_small_run_trains_exports_resumes_and_continues_from_a_net() {
    let dir = temp_dir("train-run");
    write_games(&dir.join("labels"), 40);
    let data = dir.join("labels");
    let data = data.to_str().unwrap();
    let net = dir.join("net.pb.gz");
    let net_str = net.to_str().unwrap();
    let small = ["--blocks", "1", "--filters", "8", "--batch", "64"];
    let first = train(
        &[
            &["--data", data, "--out", net_str, "--epochs", "2"],
            &small[..],
        ]
        .concat(),
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert!(stdout.contains("train: epoch 1:"), "{stdout}");
    assert!(stdout.contains("train: epoch 2:"), "{stdout}");
    // Games 19 and 39 of 40 are held out: 2 × 30 positions.
    assert!(
        stdout.contains("1140 training + 60 validation positions"),
        "{stdout}"
    );
    assert!(stdout.contains("top-1"), "{stdout}");
    let weights = banyan_nn::weights::load(&net).unwrap();
    assert_eq!(weights.describe(), "1x8 SE, conv policy, WDL");
    assert!(dir.join("net.ckpt.safetensors").is_file());
    // Resuming a finished run trains no more; asking for a third epoch runs only that one.
    let again = train(
        &[
            &[
                "--data", data, "--out", net_str, "--epochs", "3", "--resume",
            ],
            &small[..],
        ]
        .concat(),
    );
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{again:?}");
    assert!(stdout.contains("train: epoch 3:"), "{stdout}");
    assert!(!stdout.contains("train: epoch 2:"), "{stdout}");
    assert!(stdout.contains("after 2 resumed"), "{stdout}");
    // Incremental: a new run from the exported net.
    let next = dir.join("next.pb.gz");
    let from = train(&[
        "--data",
        data,
        "--out",
        next.to_str().unwrap(),
        "--init",
        net_str,
        "--epochs",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&from.stdout);
    assert!(from.status.success(), "{from:?}");
    assert!(stdout.contains(&format!("from {net_str}")), "{stdout}");
    assert_eq!(
        banyan_nn::weights::load(&next).unwrap().describe(),
        "1x8 SE, conv policy, WDL"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
