//! The process's allocator: mimalloc, with its settings for long-running servers.
//!
//! Evaluation allocates many small values per request and per resource; under load glibc's
//! `malloc` and `free` took a fifth of the webhook's time. mimalloc keeps freed memory in its
//! thread heaps for a while by default, which suits a short CLI run (faster) but leaves a server
//! at its peak after a burst of large reviews. Its settings are read from the environment when
//! the process starts (changing them in-process needs FFI, which the workspace forbids), so
//! `serve` and `controller` start themselves again, once, with memory returned at once.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Freed pages go back to the system at once instead of after a delay.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
/// The older name of the same setting, still read by mimalloc.
const RESET_DELAY: &str = "MIMALLOC_RESET_DELAY";

/// For a long-running command, replaces the process with itself started with the server
/// settings, unless the environment already sets them (the operator's choice wins). Returns
/// only when it does not restart (or the restart failed, which is reported).
pub fn use_server_settings() {
    if std::env::var_os(PURGE_DELAY).is_some() || std::env::var_os(RESET_DELAY).is_some() {
        return;
    }
    restart_with(PURGE_DELAY, "0");
}

#[cfg(unix)]
fn restart_with(var: &str, value: &str) {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!(
                "warning: could not restart with {var}={value} ({err}); memory freed after \
                 bursts is returned to the system later"
            );
            return;
        }
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(var, value)
        .exec();
    eprintln!(
        "warning: could not restart with {var}={value} ({err}); memory freed after bursts is \
         returned to the system later"
    );
}

#[cfg(not(unix))]
fn restart_with(_var: &str, _value: &str) {}
