//! `banyan`: the UCI chess engine binary.
//!
//! With no arguments it speaks UCI on stdin/stdout. Sub-commands measure it (`bench`,
//! `evalbench`); the hidden `__evaluator` and `__worker` roles are how the engine re-executes
//! itself to start its child processes.

mod command;
mod logging;
mod options;
mod output;
mod session;

use std::io::BufRead;
use std::process::ExitCode;

fn main() -> ExitCode {
    let log = logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            uci_loop(log);
            ExitCode::SUCCESS
        }
        Some("-h" | "--help" | "help") => {
            eprintln!("usage: banyan            speak UCI on stdin/stdout");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("banyan: unknown command '{other}' (try 'banyan --help')");
            ExitCode::from(2)
        }
    }
}

/// Reads UCI commands until `quit` or end of input. Lines are decoded lossily, so bytes that
/// are not UTF-8 never stop the engine.
fn uci_loop(log: logging::LogTarget) {
    let out = output::Output::stdout();
    let mut session = session::Session::new(out, log);
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading stdin: {e}");
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        tracing::debug!(target: "uci::in", "< {}", line.trim_end());
        if session.handle(&line).is_break() {
            break;
        }
    }
    session.shutdown();
}
