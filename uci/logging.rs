//! Logs go through `tracing` to stderr (warnings and errors by default, `BANYAN_LOG` to change
//! the filter) or, once the `LogFile` option names one, to that file. Never to stdout.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Where log lines go now; shared by the subscriber and the `LogFile` option.
#[derive(Clone)]
pub struct LogTarget {
    file: Arc<Mutex<Option<File>>>,
    filter: Option<FilterHandle>,
}

impl LogTarget {
    /// Sends further log lines to `path` (appending, everything at `debug` and above), or back
    /// to stderr with the `BANYAN_LOG` filter when `path` is empty.
    pub fn set_file(&self, path: &str) -> std::io::Result<()> {
        let file = if path.is_empty() {
            None
        } else {
            Some(File::options().create(true).append(true).open(path)?)
        };
        let filter = if file.is_some() {
            EnvFilter::new("debug")
        } else {
            stderr_filter()
        };
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = file;
        if let Some(handle) = &self.filter {
            let _ = handle.reload(filter);
        }
        Ok(())
    }
}

/// One log line's writer: the log file when one is set, stderr otherwise.
pub struct LogWriter {
    target: LogTarget,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut file = self
            .target
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match file.as_mut() {
            Some(f) => f.write(buf),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut file = self
            .target
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match file.as_mut() {
            Some(f) => f.flush(),
            None => std::io::stderr().flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogTarget {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter {
            target: self.clone(),
        }
    }
}

fn stderr_filter() -> EnvFilter {
    EnvFilter::try_from_env("BANYAN_LOG").unwrap_or_else(|_| EnvFilter::new("warn"))
}

/// Installs the global subscriber, logging to stderr until `LogFile` is set.
pub fn init() -> LogTarget {
    let (filter, handle) = reload::Layer::new(stderr_filter());
    let mut target = LogTarget {
        file: Arc::default(),
        filter: Some(handle),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(target.clone())
        .with_ansi(false);
    if tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .is_err()
    {
        target.filter = None; // someone else's subscriber is in charge
    }
    target
}
