//! Ctrl-C during `segment`: the target being segmented is finished and written, then the run
//! stops and says how many targets were written. A second Ctrl-C stops at once; every output
//! already written is complete, since each is renamed into place whole.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; call once, before the slow work starts.
pub fn stop_after_current_target() -> Result<(), String> {
    ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
        }
        eprintln!("\ninterrupt: stopping after the current target (press Ctrl-C again to stop now)");
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
