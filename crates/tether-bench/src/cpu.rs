//! CPU time from `/proc`: of one process (`/proc/PID/stat`) and of the whole machine
//! (`/proc/stat`), for the benchmarks' CPU-per-byte figures.

use std::process::Command;

/// User and system CPU seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu {
    pub user: f64,
    pub system: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, other: Cpu) -> Cpu {
        Cpu {
            user: self.user - other.user,
            system: self.system - other.system,
        }
    }
}

fn clock_ticks() -> f64 {
    // CLK_TCK; 100 on every Linux that matters, asked once from getconf to be sure.
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// State and utime/stime of a process.
pub fn proc_state(pid: u32) -> Option<(char, Cpu)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = clock_ticks();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((
        state,
        Cpu {
            user: user / ticks,
            system: system / ticks,
        },
    ))
}

pub fn proc_cpu(pid: u32) -> Option<Cpu> {
    proc_state(pid).map(|(_, cpu)| cpu)
}

/// Busy CPU seconds of the whole machine so far (all CPUs, everything but idle and iowait).
pub fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = values
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
        .map(|(_, v)| v)
        .sum();
    busy / clock_ticks()
}
