//! Shared memory that child processes inherit: a memfd without close-on-exec.

use std::ffi::CStr;
use std::os::fd::OwnedFd;

/// A zero-filled memfd of `bytes` bytes, inherited across fork and exec.
pub fn memfd(name: &CStr, bytes: u64) -> std::io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::empty())?;
    #[cfg(not(target_os = "linux"))]
    let fd = {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        let unique = format!(
            "/{}-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            bytes
        );
        let fd = nix::sys::mman::shm_open(
            unique.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        nix::sys::mman::shm_unlink(unique.as_str())?;
        fd
    };
    nix::unistd::ftruncate(&fd, bytes as i64)?;
    Ok(fd)
}
