//! How the binaries' allocator treats the buffers of relayed messages.
//!
//! Every relayed message allocates and frees buffers of 32-256 KiB (a forward's data, its frame,
//! TLS records). glibc's defaults give memory back as soon as more than 128 KiB lie free at the
//! top of a heap, so a steady stream of messages shrank and regrew the heaps with each one: the
//! CLI made a `brk` call per message, the agent an `madvise` (`unmap_page_range` in its profile),
//! and both paid a page fault per page touched again. Keeping up to 4 MiB free per heap removed
//! that churn (bench-port-forward, same run: 447 against 378 MB/s upload, 493 against 395
//! download). Other allocators (musl, on the shipped static agents) have no such knobs; there
//! this does nothing.
//!
//! The hub and the CLI call it; the agent does not: a device has 64-256 MB, and the agent kept
//! the memory of its largest bursts (bench-agent-footprint, after 1.3 MB of terminal output:
//! 7.3 MB resident with 4 MiB kept, 6.3 MB with 512 KiB, 5.2 MB with glibc's defaults).

/// Bytes that may stay free at the top of a heap, and the size from which an allocation gets
/// its own mapping (fixed: glibc's moving threshold starts at 128 KiB).
const KEEP_FREE: i32 = 4 * 1024 * 1024;

/// Call once at the start of `main`.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's global parameters, under its lock.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREE);
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP_FREE);
    }
}
