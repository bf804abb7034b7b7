//! Runs `wrk --latency` and reads its summary.

use std::process::Command;

use super::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

/// `wrk -t<threads> -c<connections> -d<seconds>s --latency <url>`.
pub(super) fn run(url: &str, seconds: u64, threads: u32, connections: u32) -> Result<WrkResult> {
    let wrk = std::env::var_os("WRK").unwrap_or_else(|| "wrk".into());
    let out = Command::new(&wrk)
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .map_err(Error::io("running wrk (apt-get install wrk)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse(&text).ok_or_else(|| Error::Failed(format!("cannot read wrk's output:\n{text}")))
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.01s`, `1.5m`) in milliseconds.
fn millis(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut seen_rate = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => {
                r.requests_per_sec = v.parse().ok()?;
                seen_rate = true;
            }
            ["Latency", _avg, _stdev, max, ..] => r.max_ms = millis(max)?,
            ["50%", v] => r.p50_ms = millis(v)?,
            ["99%", v] => r.p99_ms = millis(v)?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    seen_rate.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_latency_report() {
        let text = "Running 10s test @ http://127.0.0.1:8080/stores/1/wait
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms    2.10ms  41.30ms   91.02%
    Req/Sec    22.11k     2.01k   27.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    3.05ms
     99%   10.21ms
  440012 requests in 10.00s, 120.01MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:  44001.20
Transfer/sec:     12.00MB
";
        let r = parse(text).expect("parsed");
        assert_eq!(r.requests_per_sec, 44001.2);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.p99_ms - 10.21).abs() < 1e-9);
        assert!((r.max_ms - 41.3).abs() < 1e-9);
        assert_eq!((r.requests, r.non_2xx, r.socket_errors), (440012, 12, 3));
        assert!(parse("garbage").is_none());
        assert_eq!(millis("2.5s"), Some(2500.0));
    }
}
