//! Checks of the standard process metrics both services add to `/metrics`.

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// Panics unless `text` has the six standard `process_*` metrics with plausible values for a
/// running service (on Linux; elsewhere they must be absent, never zero).
#[track_caller]
pub fn assert_process_metrics(text: &str) {
    let names = [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ];
    if !cfg!(target_os = "linux") {
        for name in names {
            assert!(sample(text, name).is_none(), "{name} without /proc: {text}");
        }
        return;
    }
    let value = |name: &str| {
        sample(text, name).unwrap_or_else(|| panic!("no sample of {name} in:\n{text}"))
    };
    for name in names {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE line:\n{text}"
        );
    }
    let mib = 1024.0 * 1024.0;
    let resident = value("process_resident_memory_bytes");
    assert!(
        (mib..64.0 * 1024.0 * mib).contains(&resident),
        "RSS {resident}"
    );
    assert!(value("process_virtual_memory_bytes") >= resident);
    let (open, max) = (value("process_open_fds"), value("process_max_fds"));
    assert!(open >= 3.0 && open <= max, "{open} fds open, at most {max}");
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 2.0 && started > now - 86_400.0,
        "started at {started}, now {now}"
    );
}
