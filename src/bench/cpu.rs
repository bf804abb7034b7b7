//! Where the machine's CPU went during a step, from /proc: the service, the load generator
//! (`wrk`, a child of the bench that exits within the step, so it shows in the bench's
//! reaped-children times), the bench itself (its producer), and the rest (the broker, mostly).
//!
//! Shares are of all cores' time over the step, read in the same clock ticks on both sides,
//! so no tick rate is needed.

use super::procfs;

/// Cumulative CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    /// Every core's time, idle included.
    total: u64,
    idle: u64,
    service: u64,
    bench: u64,
    children: u64,
}

/// The split of one interval, each a share of all cores' time (they sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSplit {
    pub service: f64,
    pub load_generator: f64,
    pub bench: f64,
    pub rest: f64,
    pub idle: f64,
}

impl Sample {
    pub(super) fn take(service_pid: u32) -> Option<Sample> {
        let (total, idle) = machine(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let (service, _) =
            procfs::ticks(&std::fs::read_to_string(format!("/proc/{service_pid}/stat")).ok()?)?;
        let (bench, children) = procfs::ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(Sample {
            total,
            idle,
            service,
            bench,
            children,
        })
    }

    /// The split from `self` (earlier) to `later`.
    pub(super) fn split(&self, later: &Sample) -> Option<CpuSplit> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)? as f64;
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / total;
        let service = d(self.service, later.service);
        let load_generator = d(self.children, later.children);
        let bench = d(self.bench, later.bench);
        let idle = d(self.idle, later.idle);
        let rest = (1.0 - service - load_generator - bench - idle).max(0.0);
        Some(CpuSplit {
            service,
            load_generator,
            bench,
            rest,
            idle,
        })
    }
}

impl CpuSplit {
    pub fn describe(&self, cores: usize) -> String {
        let pct = |x: f64| format!("{:.0} %", x * 100.0);
        format!(
            "CPU of {cores} cores: service {}, load generator {}, bench producer {}, broker and the rest {}, idle {}",
            pct(self.service),
            pct(self.load_generator),
            pct(self.bench),
            pct(self.rest),
            pct(self.idle)
        )
    }
}

/// `(all time, idle + iowait)` from the aggregate `cpu` line of /proc/stat.
fn machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // inside user, so the first eight make the total.
    let total = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat_lines() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\n";
        assert_eq!(machine(stat), Some((981, 820)));
        assert_eq!(machine("garbage"), None);
    }

    #[test]
    fn shares_of_an_interval_sum_to_one() {
        let a = Sample {
            total: 1000,
            idle: 300,
            service: 100,
            bench: 50,
            children: 0,
        };
        let b = Sample {
            total: 3000,
            idle: 500,
            service: 900,
            bench: 250,
            children: 400,
        };
        let s = a.split(&b).expect("a split");
        assert_eq!(
            (s.service, s.load_generator, s.bench, s.idle),
            (0.4, 0.2, 0.1, 0.1)
        );
        assert!((s.rest - 0.2).abs() < 1e-9);
        assert!(b.split(&a).is_none(), "time never runs backwards");
    }
}
