//! Starting worker processes: fork (Linux default) or re-execution of the binary (spawn), and
//! making sure they never outlive the engine.
//!
//! Fork safety: the engine forks only from its main thread, before libtorch is ever
//! initialised in this process (it never is: the network lives in the evaluator process). A
//! forked child touches nothing another thread could have locked: not stdout, not the log
//! writer (it installs its own subscriber writing straight to fd 2), only the shared memory it
//! maps anew and its command pipe; it leaves with `_exit`.

use std::fs::File;
use std::io::BufReader;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use banyan_nn::cache::EvalCache;
use banyan_tree::Arena;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::control::Control;
use crate::worker::WorkerProcess;

/// The first argument that makes the binary a worker process (spawn mode).
pub const WORKER_ROLE: &str = "__worker";

/// How child processes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessMode {
    /// `fork()` of the engine (Linux default; cheapest).
    Fork,
    /// Re-execution of the engine binary with a role argument (macOS; selectable anywhere).
    Spawn,
}

impl ProcessMode {
    /// The platform's default: fork on Linux, spawn elsewhere.
    pub fn platform_default() -> ProcessMode {
        if cfg!(target_os = "linux") {
            ProcessMode::Fork
        } else {
            ProcessMode::Spawn
        }
    }
}

/// The shared memory a worker maps.
pub struct SharedFds<'a> {
    pub arena: BorrowedFd<'a>,
    pub control: BorrowedFd<'a>,
    pub cache: Option<BorrowedFd<'a>>,
}

/// A running worker process, seen from the coordinator.
pub struct WorkerChild {
    pub pid: Pid,
    /// Write end of its command pipe; closing it tells the worker to quit.
    pub orders: File,
    exited: bool,
    /// Its leftovers in the tree were removed after it died.
    pub recovered: bool,
}

impl WorkerChild {
    /// Starts worker `id`.
    pub fn start(
        mode: ProcessMode,
        exe: &Path,
        id: u32,
        fds: &SharedFds,
    ) -> std::io::Result<WorkerChild> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let pid = match mode {
            ProcessMode::Fork => fork_worker(id, fds, read, &write)?,
            ProcessMode::Spawn => spawn_worker(exe, id, fds, read)?,
        };
        Ok(WorkerChild {
            pid,
            orders: File::from(write),
            exited: false,
            recovered: false,
        })
    }

    /// Whether the process still runs (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        if self.exited {
            return false;
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            _ => {
                self.exited = true;
                false
            }
        }
    }

    /// Kills and reaps the process.
    pub fn kill(&mut self) {
        if !self.exited {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
            self.exited = true;
        }
    }
}

impl Drop for WorkerChild {
    fn drop(&mut self) {
        self.kill();
    }
}

fn fork_worker(id: u32, fds: &SharedFds, read: OwnedFd, write: &OwnedFd) -> std::io::Result<Pid> {
    let parent = nix::unistd::getpid();
    // Duplicates made before the fork, so the child does no fd bookkeeping of its own.
    let arena = fds.arena.try_clone_to_owned()?;
    let control = fds.control.try_clone_to_owned()?;
    let cache = fds.cache.map(|fd| fd.try_clone_to_owned()).transpose()?;
    let log_level = crate::childlog::level();
    // SAFETY: see the module comment: the child only uses its own fresh state.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child),
        nix::unistd::ForkResult::Child => {
            // A panic must never unwind into the parent's copied stack (its destructors would
            // kill the siblings and the evaluator): it ends this child, here.
            let main = std::panic::AssertUnwindSafe(|| {
                child_main(parent, write.as_raw_fd(), log_level, || {
                    let cache = cache.map(EvalCache::from_fd).transpose()?;
                    Ok(WorkerProcess {
                        id,
                        arena: Arena::open_fd(arena).map_err(std::io::Error::other)?,
                        control: Control::open(control)?,
                        cache: cache.map(Arc::new),
                        orders: BufReader::new(File::from(read)),
                    })
                })
            });
            let code = std::panic::catch_unwind(main).unwrap_or(101);
            // SAFETY: leaving without running the parent's exit handlers or destructors.
            unsafe { nix::libc::_exit(code) }
        }
    }
}

/// The body of a forked worker: own logging, parent watch, then serve orders.
fn child_main(
    parent: Pid,
    parent_write_end: RawFd,
    log_level: tracing::Level,
    open: impl FnOnce() -> std::io::Result<WorkerProcess>,
) -> i32 {
    let _log = crate::childlog::install(log_level);
    die_with_parent(parent);
    // The write end of our own pipe belongs to the parent; holding it would hide its EOF.
    let _ = nix::unistd::close(parent_write_end);
    match open() {
        Ok(worker) => {
            worker.run();
            0
        }
        Err(e) => {
            tracing::error!("worker start: {e}");
            1
        }
    }
}

fn spawn_worker(exe: &Path, id: u32, fds: &SharedFds, read: OwnedFd) -> std::io::Result<Pid> {
    use std::os::unix::process::CommandExt;
    let raw = |fd: Option<BorrowedFd>| fd.map_or(-1, |fd| fd.as_raw_fd());
    let order_fd = read.as_raw_fd();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(WORKER_ROLE)
        .args(
            [
                id as i64,
                raw(Some(fds.arena)) as i64,
                raw(Some(fds.control)) as i64,
                raw(fds.cache) as i64,
                order_fd as i64,
            ]
            .map(|n| n.to_string()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (fcntl, prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let flags = nix::libc::fcntl(order_fd, nix::libc::F_GETFD);
            nix::libc::fcntl(order_fd, nix::libc::F_SETFD, flags & !nix::libc::FD_CLOEXEC);
            die_with_parent(parent);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(read);
    Ok(Pid::from_raw(child.id() as i32))
}

/// Linux: the kernel kills us when the thread that started us exits (the engine's main
/// thread). Everywhere: the command pipe's end of file ends the worker loop.
fn die_with_parent(parent: Pid) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG is async-signal-safe and affects only us.
        unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) };
    }
    if nix::unistd::getppid() != parent {
        // SAFETY: the parent died before we could watch it.
        unsafe { nix::libc::_exit(0) };
    }
}

/// `banyan __worker <id> <arena fd> <control fd> <cache fd or -1> <order fd>`: the spawned
/// worker's main.
pub fn worker_main(args: &[String]) -> std::process::ExitCode {
    let parsed: Option<Vec<i64>> = args.iter().map(|a| a.parse().ok()).collect();
    let Some([id, arena, control, cache, orders]) =
        parsed.as_deref().and_then(|v| <[i64; 5]>::try_from(v).ok())
    else {
        eprintln!(
            "banyan {WORKER_ROLE}: expected <id> <arena fd> <control fd> <cache fd> <order fd>"
        );
        return std::process::ExitCode::from(2);
    };
    // SAFETY: the coordinator handed these fds to us at exec time and nothing else owns them.
    let own = |fd: i64| unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let open = || -> std::io::Result<WorkerProcess> {
        Ok(WorkerProcess {
            id: id as u32,
            arena: Arena::open_fd(own(arena)).map_err(std::io::Error::other)?,
            control: Control::open(own(control))?,
            cache: if cache >= 0 {
                Some(Arc::new(EvalCache::from_fd(own(cache))?))
            } else {
                None
            },
            orders: BufReader::new(File::from(own(orders))),
        })
    };
    match open() {
        Ok(worker) => {
            worker.run();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("worker start: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
