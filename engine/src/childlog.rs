//! Logging in a forked child: a fresh subscriber writing straight to fd 2, so the child never
//! waits on a log lock that another thread of the parent held at fork time.

use std::io::Write;

/// Writes each log line with one `write(2)` on stderr, without locks.
struct RawStderr;

impl Write for RawStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        nix::unistd::write(std::io::stderr(), buf).map_err(std::io::Error::from)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The child's log level: `warn`, or `BANYAN_LOG`'s when it names one. Read before forking
/// (the environment has a lock of its own).
pub fn level() -> tracing::Level {
    match std::env::var("BANYAN_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::WARN,
    }
}

/// Makes this thread's logs go to fd 2 at `level`. Keep the guard while the child runs.
pub fn install(level: tracing::Level) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(|| RawStderr)
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    tracing::subscriber::set_default(subscriber)
}
