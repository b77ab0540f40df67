//! Latency summaries.

use std::time::Duration;

/// Percentiles of a set of latencies.
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| {
        if samples.is_empty() {
            Duration::ZERO
        } else {
            samples[((samples.len() - 1) as f64 * q).round() as usize]
        }
    };
    Summary {
        count: samples.len(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Resident memory of a process in MiB (from /proc).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
