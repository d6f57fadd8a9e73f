//! The real services as processes of their own (the release `relance` binary), and what
//! `/proc` says of them and of PostgreSQL and RabbitMQ: CPU time (utime + stime, plus the
//! children's that were reaped, for servers that fork a process per connection) and peak
//! memory (VmHWM).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// (utime + stime, cutime + cstime) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
    // Fields 14-17 of proc(5) (utime, stime, cutime, cstime); field 3 is index 0 here.
    Some((field(11)? + field(12)?, field(13)? + field(14)?))
}

/// Peak resident memory of a process, in KiB.
pub fn peak_memory_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU ticks of every process named `comm` (its reaped children included): PostgreSQL's
/// backends come and go, and their time lands in the postmaster's children's time.
pub fn cpu_ticks_of(comm: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .filter_map(cpu_ticks)
        .map(|(own, children)| own + children)
        .sum()
}

/// One running `relance run <services>` process.
pub struct Service {
    pub label: String,
    pid: u32,
    child: Child,
}

/// What a process used, read just before it was stopped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub label: String,
    pub cpu_seconds: f64,
    pub peak_memory_mib: f64,
}

/// The `relance` binary beside this one (same target folder), unless given.
pub fn relance_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating relance-bench")?
            .with_file_name("relance"),
    };
    anyhow::ensure!(
        path.exists(),
        "no relance binary at {} (build it: cargo build --release -p relance, or give --relance-bin)",
        path.display()
    );
    Ok(path)
}

impl Service {
    pub fn spawn(
        binary: &Path,
        label: &str,
        services: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log_dir.join(format!("{label}.log")))
            .with_context(|| format!("creating the log of {label}"))?;
        let child = Command::new(binary)
            .arg("run")
            .args(services)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} run {}", binary.display(), services.join(" ")))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Self {
            label: label.to_string(),
            pid,
            child,
        })
    }

    /// CPU and peak memory so far.
    pub fn usage(&self, ticks_per_second: f64) -> Usage {
        Usage {
            label: self.label.clone(),
            cpu_seconds: cpu_ticks(self.pid).map_or(0.0, |(own, _)| own as f64 / ticks_per_second),
            peak_memory_mib: peak_memory_kib(self.pid).map_or(0.0, |k| k as f64 / 1024.0),
        }
    }

    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM (the services finish what they handle), then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + grace;
        loop {
            if self.child.try_wait().context("waiting for a service")?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.child.kill().await.context("killing a service")?;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A free TCP port on 127.0.0.1 (for a service's health endpoint).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("a free port")?.port())
}

/// Whether `GET /health/ready` at 127.0.0.1:`port` answered, and whether with 200.
pub async fn ready(port: u16) -> (bool, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (false, false);
    };
    let request = b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return (false, false);
    }
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head).await {
        Ok(_) => (true, head.ends_with(b"200")),
        Err(_) => (false, false),
    }
}

/// The command line that runs this benchmark, as the results record it.
pub fn command_line() -> String {
    std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The checkout the benchmark ran in: its commit, with `+changes` when files it tracks were
/// modified; `None` outside a git checkout. (What it says of the binaries measured holds when
/// they were built from this checkout, as `cargo run --release` does.)
pub fn revision() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=7", "HEAD"])?;
    let changed = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if changed {
        format!("{commit}+changes")
    } else {
        commit
    })
}

/// A connection to the broker, tried up to three times: a broker busy with the quorum queues
/// the services declare at once as they start has been seen not to answer within
/// `relance_messaging::connect`'s 10 s on this 2-core machine, and one such moment must not
/// end a benchmark run of many minutes (the services themselves reconnect on their own).
pub async fn connect_broker(amqp_url: &str, name: &str) -> anyhow::Result<lapin::Connection> {
    let mut attempt = 1;
    loop {
        match relance_messaging::connect(amqp_url, name).await {
            Ok(connection) => return Ok(connection),
            Err(e) if attempt < 3 => {
                eprintln!("  broker connection, attempt {attempt} of 3: {e:#}; trying again");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.context(format!("connecting to the broker ({attempt} attempts)"))),
        }
    }
}

/// The sum of the samples of metric `name` whose labels contain `label` (e.g.
/// `reason_class="pool_busy"`), read from the process's `GET /metrics` on `port`; 0 when the
/// metric has no such sample yet.
pub async fn metric_sum(port: u16, name: &str, label: &str) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("an HTTP client")?;
    let exposition = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET /metrics on port {port}"))?
        .text()
        .await
        .with_context(|| format!("reading /metrics on port {port}"))?;
    Ok(sum_of(&exposition, name, label))
}

fn sum_of(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_the_samples_with_the_label() {
        let exposition = "# TYPE relance_messages_retried_total counter\n\
            relance_messages_retried_total{queue=\"renderer\",reason_class=\"pool_busy\"} 3\n\
            relance_messages_retried_total{queue=\"sender\",reason_class=\"pool_busy\"} 2\n\
            relance_messages_retried_total{queue=\"sender\",reason_class=\"transient\"} 7\n\
            relance_messages_retried_total_extra{reason_class=\"pool_busy\"} 100\n";
        let busy = sum_of(
            exposition,
            "relance_messages_retried_total",
            "reason_class=\"pool_busy\"",
        );
        assert!((busy - 5.0).abs() < f64::EPSILON, "{busy}");
        assert!(sum_of("", "relance_messages_retried_total", "x").abs() < f64::EPSILON);
    }

    #[test]
    fn reads_cpu_and_peak_memory_of_a_process() {
        let me = std::process::id();
        // Burn a little CPU so that at least a tick is counted.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let (own, _) = cpu_ticks(me).unwrap();
        assert!(own > 0);
        assert!(peak_memory_kib(me).unwrap() > 100);
        assert!(cpu_ticks_of("no-such-process-name") == 0);
    }
}
