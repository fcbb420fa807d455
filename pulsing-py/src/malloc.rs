//! Keeps glibc's allocator from handing large freed blocks back to the kernel after every
//! message.
//!
//! With glibc's defaults a process that moves megabyte messages pays for fresh pages on almost
//! every one: blocks over the (dynamic) mmap threshold are `mmap`ed and `munmap`ed, and freed
//! space at the top of a heap above 2× that threshold is trimmed, so the next message of the same
//! size faults in and zeroes 256 new pages per MiB. Measured with the benchmark's 1 MiB echo
//! across two Python processes: 0.40–0.55 GB/s with the defaults, 1.2–1.3 GB/s with the settings
//! below (BENCHMARKS.md). The cost is memory: up to [`TRIM_THRESHOLD`] of free space per malloc
//! arena stays with the process instead of going back to the kernel.
//!
//! [`tune`] applies the settings once, when the runtime starts, unless the user chose for
//! themselves: `PULSING_MALLOC=system` keeps glibc's defaults, and so does setting any of glibc's
//! own malloc knobs (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or `glibc.malloc.*` in
//! `GLIBC_TUNABLES`). Other C libraries are left alone.

use std::sync::OnceLock;

/// Blocks up to this size come from the heap instead of their own `mmap` (glibc's maximum).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free space at the top of a heap beyond this is returned to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 64 << 20;

static TUNED: OnceLock<bool> = OnceLock::new();

/// Applies the settings (at most once per process); true if they are in force.
pub(crate) fn tune() -> bool {
    *TUNED.get_or_init(|| left_to_us() && apply())
}

/// True if [`tune`] has applied the settings in this process.
pub(crate) fn tuned() -> bool {
    TUNED.get().copied().unwrap_or(false)
}

/// False if the environment says the user chose the allocator's settings.
fn left_to_us() -> bool {
    let opted_out = std::env::var("PULSING_MALLOC").is_ok_and(|v| v == "system");
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    !opted_out
        && !tunables.contains("glibc.malloc.")
        && ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .all(|name| std::env::var_os(name).is_none())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: `mallopt` only sets glibc's global tuning parameters; it is thread-safe.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 {
            return false;
        }
        if libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1 {
            // Half-tuned is worse than untuned: back to glibc's default mmap threshold.
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
            return false;
        }
        true
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
