//! The front-end's state between commands: options and the current position.

use std::ops::ControlFlow;

use crate::command::{self, Command};
use crate::logging::LogTarget;
use crate::options::Options;
use crate::output::Output;

/// The engine as the GUI sees it.
pub struct Session {
    out: Output,
    log: LogTarget,
    options: Options,
}

impl Session {
    pub fn new(out: Output, log: LogTarget) -> Self {
        Session {
            out,
            log,
            options: Options::default(),
        }
    }

    /// Handles one input line; `Break` after `quit`.
    pub fn handle(&mut self, line: &str) -> ControlFlow<()> {
        match command::parse(line) {
            Command::Uci => {
                self.out
                    .line(format_args!("id name Banyan {}", env!("CARGO_PKG_VERSION")));
                self.out.line("id author The Banyan developers");
                for decl in Options::declarations() {
                    self.out.line(vampirc_uci::UciMessage::Option(decl));
                }
                self.out.line("uciok");
            }
            Command::IsReady => self.out.line("readyok"),
            Command::SetOption { name, value } => self.set_option(&name, value.as_deref()),
            Command::Quit => return ControlFlow::Break(()),
            Command::Empty | Command::Debug => {}
            Command::Unknown(why) => self.out.error(why),
            other => self.out.error(format_args!("not handled yet: {other:?}")),
        }
        ControlFlow::Continue(())
    }

    fn set_option(&mut self, name: &str, value: Option<&str>) {
        let (name, value) = match Options::parse(name, value) {
            Ok(parsed) => parsed,
            Err(why) => return self.out.error(why),
        };
        if name == "LogFile" {
            if let options::Value::Text(path) = &value {
                if let Err(e) = self.log.set_file(path) {
                    return self
                        .out
                        .error(format_args!("LogFile: cannot open '{path}': {e}"));
                }
            }
        }
        self.options.set(name, value);
    }

    /// Ends the engine: stops any search and its processes.
    pub fn shutdown(&mut self) {}
}

use crate::options;
