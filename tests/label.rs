//! `banyan label` through the real binary: bad input fails cleanly, and a small run writes
//! chunk files and resumes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn label(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banyan"))
        .arg("label")
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run banyan label")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("banyan-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let dir = temp_dir("label-bad");
    let book = dir.join("book.epd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&book, "not a position\n").unwrap();
    let book = book.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--positions", "5", "--jobs", "0"], "--jobs"),
        (&["--positions", "5", "--multipv", "0"], "--multipv"),
        (
            &["--positions", "5", "--label-fraction", "0"],
            "--label-fraction",
        ),
        (
            &["--positions", "5", "--book", "/nonexistent/book.epd"],
            "cannot read book",
        ),
        (
            &[
                "--positions",
                "5",
                "--stockfish",
                "/bin/true",
                "--book",
                book,
            ],
            "not an EPD",
        ),
        (
            &["--positions", "5", "--stockfish", "/nonexistent/sf"],
            "cannot start",
        ),
        (&["--positions", "many"], "invalid value"),
    ];
    for (args, expected) in cases {
        let output = label(&dir, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_small_run_writes_chunks_and_resumes() {
    let test = "label::a_small_run_writes_chunks_and_resumes";
    let Some(stockfish) = banyan_nn::train::stockfish::find() else {
        common::skip(
            test,
            "no Stockfish binary (`stockfish` on PATH or /usr/games/stockfish)",
        );
        return;
    };
    let dir = temp_dir("label-run");
    let sf = stockfish.to_str().unwrap();
    let small = [
        "--label-nodes",
        "1000",
        "--play-nodes",
        "100",
        "--chunk-positions",
        "5",
    ];
    let first = label(
        &dir,
        &[&["--positions", "8", "--stockfish", sf], &small[..]].concat(),
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert!(stdout.contains("label: done: 8 positions"), "{stdout}");
    let second = label(
        &dir,
        &[&["--positions", "12", "--stockfish", sf], &small[..]].concat(),
    );
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{second:?}");
    assert!(stdout.contains("label: done: 4 positions"), "{stdout}");
    assert!(stdout.contains("(12 in all)"), "{stdout}");
    let chunks = banyan_nn::train::label::chunk_files(&dir).unwrap();
    // Each run ends with a chunk of its own; the second continues the numbering.
    let numbers: Vec<u32> = chunks.iter().map(|c| c.0).collect();
    assert!(numbers.len() >= 2, "{chunks:?}");
    assert_eq!(numbers, (0..numbers.len() as u32).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
}
