//! Asymmetric fences for the call path's handshake with unload.
//!
//! A call marks itself in flight, then reads the plugin's `closing` flag; unload sets
//! `closing`, then reads the in-flight gauge. Either side must see the other's write, which
//! takes a full fence between each side's write and read. A call is frequent and unload
//! rare, so the call pays only a compiler fence ([`light`]) and unload pays a barrier on
//! every running thread of the process ([`heavy`]: `membarrier(2)`, private expedited).
//! That barrier runs a full fence on each CPU that runs one of our threads, so a call's
//! mark is visible to unload by the time it returns, or the call's read of `closing` comes
//! after it and sees `true`.
//!
//! Where the kernel lacks the command (before Linux 4.14, or a sandbox that filters the
//! call), [`asymmetric`] says so and the call path keeps its locked increment, which is a
//! full fence of its own. The choice is made once per process, before any plugin is
//! called, and never changes.
//!
//! Measured (`kcoro-bench plugin`, one binary with the barrier registered and withheld):
//! 0.5–1 ns per empty unary call of kcoro's own plugin, 3–4 ns per call through a
//! nylon-ring plugin.

use std::sync::OnceLock;

static ASYMMETRIC: OnceLock<bool> = OnceLock::new();

/// Registers the process for [`heavy`] barriers, once; whether they are available. Call
/// before the first call into a plugin (loading does).
pub(crate) fn init() -> bool {
    *ASYMMETRIC.get_or_init(register)
}

#[cfg(target_os = "linux")]
fn register() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
    membarrier_query().contains_command(MembarrierCommand::PrivateExpedited)
        && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn register() -> bool {
    false
}

/// Whether the call path may use [`light`] fences: [`init`] registered the process.
#[inline]
pub(crate) fn asymmetric() -> bool {
    ASYMMETRIC.get().copied().unwrap_or(false)
}

/// The frequent side's fence: orders nothing in hardware, only keeps the compiler from
/// moving the mark past the read. Sound only while [`asymmetric`] holds.
#[inline]
pub(crate) fn light() {
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// The rare side's fence: returns once every thread of the process has passed a full
/// fence. Fails only if the process was never registered ([`asymmetric`] is false), in
/// which case the frequent side used full fences and none is needed.
pub(crate) fn heavy() -> std::io::Result<()> {
    if !asymmetric() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{MembarrierCommand, membarrier};
        membarrier(MembarrierCommand::PrivateExpedited)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn linux_registers_and_the_barrier_runs() {
        // This machine's kernel has the command (4.14+); if a sandbox filtered it, the test
        // says so instead of passing on the fallback.
        assert!(init(), "membarrier(PRIVATE_EXPEDITED) is unavailable here");
        assert!(asymmetric());
        heavy().expect("a registered process may call the barrier");
    }
}
