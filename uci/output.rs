//! The UCI channel: stdout carries protocol lines only, one whole line per write.
//!
//! `println!` panics when the GUI has gone (a broken pipe); here a failed write ends the engine
//! quietly instead, and the children follow it because they watch their parent.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// A cloneable handle on stdout that writes whole lines and never panics.
#[derive(Clone)]
pub struct Output {
    out: Arc<Mutex<std::io::Stdout>>,
}

impl Output {
    pub fn stdout() -> Self {
        Output {
            out: Arc::new(Mutex::new(std::io::stdout())),
        }
    }

    /// Writes one protocol line and flushes it. If the GUI is gone, exits the process quietly.
    pub fn line(&self, line: impl std::fmt::Display) {
        let text = format!("{line}\n");
        let out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lock = out.lock();
        if lock
            .write_all(text.as_bytes())
            .and_then(|()| lock.flush())
            .is_err()
        {
            tracing::info!("stdout closed; exiting");
            std::process::exit(0);
        }
        tracing::trace!(target: "uci::out", "> {}", text.trim_end());
    }

    /// Writes `info string <text>`, the way a GUI shows a message from the engine.
    pub fn info_string(&self, text: impl std::fmt::Display) {
        self.line(format_args!("info string {text}"));
    }

    /// Writes `info string error: <text>`, the engine's answer to input it cannot use.
    pub fn error(&self, text: impl std::fmt::Display) {
        tracing::warn!("{text}");
        self.info_string(format_args!("error: {text}"));
    }
}
