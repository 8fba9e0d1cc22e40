//! How the process's allocator treats the CPU backend's large buffers (docs/MODEL.md §20).
//!
//! A forward pass on the CPU allocates and frees buffers of tens of megabytes hundreds of times
//! (attention scores, the MLP's hidden layer). glibc serves every allocation over its mmap
//! threshold (32 MiB at most) with a fresh mapping and unmaps it on free, so each one costs a page
//! fault and a page clear per 4 KiB touched: about 8 million faults and a fifth of the run's time
//! for one prompt. Kept in the heap instead, a freed buffer is reused by the next of its size.

/// Serves every allocation from the heap and never hands freed heap memory back to the system,
/// so the process stays at its peak size until it exits. Call before any thread starts.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Heap kept beyond each request, so growing the heap is rare.
        const TOP_PAD_BYTES: libc::c_int = 256 << 20;
        // SAFETY: mallopt only changes allocator parameters; it is called from `main` before any
        // other thread exists. A refused setting (return value 0) leaves glibc's default.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            // -1: never trim (mallopt(3)).
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD_BYTES);
        }
    }
}
