//! Signals to a fixture's processes, as `kill -<NAME>` sends them.

use std::process::Command;

/// Send SIG`name` (`STOP`, `CONT`, …) to every process of `pids`; panics when `kill` fails.
pub(crate) fn send(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let out = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "kill -{name} {pids:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("kill -{name} {pids:?}: {e}"),
    }
}
