//! The first things a GUI does with an engine, through the real binary.

mod common;

use common::Engine;

#[test]
fn uci_answers_from_another_directory_with_an_empty_environment() {
    let mut engine = Engine::start_in(std::env::temp_dir(), true);
    engine.send("uci");
    let lines = engine.read_until("uciok");
    assert!(
        lines.iter().any(|l| l.starts_with("id name Banyan")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("option name Threads type spin")),
        "{lines:?}"
    );
    engine.send("isready");
    engine.read_until("readyok");
    engine.quit();
}

#[test]
fn bad_input_gets_an_error_and_the_engine_goes_on() {
    let mut engine = Engine::start();
    for line in [
        "xyzzy",
        "setoption name Threads value 0",
        "setoption name NoSuchOption value 1",
        "position",
        "",
        "\u{feff}garbage ünïcödé",
    ] {
        engine.send(line);
    }
    engine.send_bytes(b"\xff\xfe\x00 not utf-8\n");
    engine.send("isready");
    let lines = engine.read_until("readyok");
    let errors = lines
        .iter()
        .filter(|l| l.starts_with("info string error: "))
        .count();
    assert_eq!(errors, 6, "{lines:?}");
    engine.quit();
}
