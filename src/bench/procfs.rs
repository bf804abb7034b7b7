//! What /proc says about a child process: resident memory and CPU time, read the same way for
//! the service and the peers.

/// `VmRSS` (now) or `VmHWM` (peak) of `pid`, in bytes.
pub(super) fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds of every thread of `pid` so far.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_from_stat(&stat)
}

/// Linux reports CPU times in USER_HZ, which is 100 on every architecture it exposes to user
/// space.
fn cpu_from_stat(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    ticks(stat).map(|(own, _)| own as f64 / USER_HZ)
}

/// `(utime + stime, cutime + cstime)` in clock ticks: fields 14–17 of a `/proc/<pid>/stat`
/// line, counted after the command name (which may hold spaces and parentheses, so the split
/// starts at its last `)`). The second is the CPU of children already waited for.
pub(super) fn ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().skip(11).take(4).collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some((n(0)? + n(1)?, n(2)? + n(3)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_command_name() {
        let line = "4242 (java (peer) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 40";
        assert_eq!(cpu_from_stat(line), Some(3.25));
        assert_eq!(cpu_from_stat("4242 (x) S 1"), None);
        let waited = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 70 30 9 1 20 0 4";
        assert_eq!(ticks(waited), Some((100, 10)));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(status_bytes(me, "VmRSS").is_some_and(|b| b > 0));
        assert!(status_bytes(me, "VmHWM") >= status_bytes(me, "VmRSS").map(|_| 1));
        assert!(cpu_seconds(me).is_some());
        assert_eq!(status_bytes(me, "VmNoSuchField"), None);
    }
}
