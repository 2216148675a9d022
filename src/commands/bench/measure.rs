//! What the benchmarks read off the machine: memory and CPU time from `/proc` (Linux), and
//! percentiles of samples.

/// Resident memory of this process in KiB (Linux), for the memory figures.
pub(super) fn rss_kib() -> Option<u64> {
    status_kib("self", "VmRSS:")
}

/// Resets the kernel's high-water mark of this process's resident memory (`VmHWM`) to the current
/// resident size (Linux 4.0 and later); false where it cannot.
pub(super) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A memory field (`VmRSS:`, `VmHWM:`) of `/proc/<process>/status`, in KiB (Linux).
pub(crate) fn status_kib(process: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// CPU time used so far, in seconds: (this process, every local process named `postgres`), from
/// `/proc` (Linux; zero elsewhere). With the database on this machine the second figure is the
/// database server's share, so that a rate can be read as CPU per record on each side.
pub(super) fn cpu_secs() -> (f64, f64) {
    // /proc reports CPU time in USER_HZ ticks, 100 a second on Linux.
    const TICKS_PER_SEC: f64 = 100.0;
    let ticks = |pid: &str| -> Option<(String, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        // After the name: state, ppid, … ; utime and stime are fields 14 and 15 of the line.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let user: u64 = fields.get(11)?.parse().ok()?;
        let system: u64 = fields.get(12)?.parse().ok()?;
        Some((name, user + system))
    };
    let own = ticks("self").map_or(0, |(_, t)| t);
    let database: u64 = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .filter_map(|pid| ticks(&pid))
                .filter(|(name, _)| name == "postgres")
                .map(|(_, t)| t)
                .sum()
        })
        .unwrap_or(0);
    (own as f64 / TICKS_PER_SEC, database as f64 / TICKS_PER_SEC)
}

/// CPU microseconds per item on each side between two [`cpu_secs`] readings, as report text.
/// The PostgreSQL share is left out for SQLite, which runs inside this process.
pub(super) fn cpu_per_item(before: (f64, f64), after: (f64, f64), items: u64, postgres: bool) -> String {
    let per = |secs: f64| secs * 1e6 / items.max(1) as f64;
    let own = format!("CPU {:.2} µs in lefi", per(after.0 - before.0));
    if postgres {
        format!("{own} + {:.2} µs in PostgreSQL", per(after.1 - before.1))
    } else {
        own
    }
}

/// The median of `values` (the mean of the middle two for an even count; 0 for none).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    (values[(values.len() - 1) / 2] + values[values.len() / 2]) / 2.0
}

/// A percentile of sorted samples.
pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
