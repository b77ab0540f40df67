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

/// CPU time (user + system, in clock ticks of 10 ms) used so far by all processes whose
/// command name is `comm` (e.g. `java` for Neo4j, `node` for DBHub, `postgres`).
pub fn cpu_ticks(comm: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            if &stat[open + 1..close] != comm {
                return None;
            }
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// CPU time (clock ticks) this process used so far.
pub fn self_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let close = stat.rfind(')')?;
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}
