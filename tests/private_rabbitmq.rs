//! A RabbitMQ node of the test's own (its own node name, free ports, data, logs, config,
//! plugins file and Erlang cookie in a temporary folder), so that a test can stop and restart
//! the broker without disturbing the machine's shared one or anything else using it. It must
//! not talk to, or read the settings of, any other node: every file the scripts would take
//! from /etc/rabbitmq or the rabbitmq user's home is replaced by one in its folder.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the node may take to boot (about 9 s on a busy two-core machine).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// How long a graceful stop (SIGTERM) may take before the node is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

pub struct PrivateRabbitMq {
    /// The AMQP port.
    pub port: u16,
    /// The Erlang node name, for `rabbitmqctl -n`.
    pub node: String,
    /// The port of the Prometheus plugin's `/metrics`, when started with it.
    pub prometheus_port: Option<u16>,
    dist_port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The `rabbitmq-server` script started by [`PrivateRabbitMq::start_again`] (it runs the
    /// Erlang VM as its child and stops it on SIGTERM).
    server: Option<Child>,
}

/// The folder holding `rabbitmq-server` and `rabbitmqctl` (the scripts themselves, not
/// Debian's `/usr/sbin` wrappers, which switch to the rabbitmq user and its home):
/// `RELANCE_TEST_RABBITMQ_BIN`, else `/usr/lib/rabbitmq/bin`, else `rabbitmq-server`'s
/// folder on the `PATH` (e.g. Homebrew's `sbin`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RELANCE_TEST_RABBITMQ_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let debian = Path::new("/usr/lib/rabbitmq/bin");
    if debian.join("rabbitmq-server").exists() {
        return Ok(debian.to_path_buf());
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v rabbitmq-server"])
        .output()
        .context("looking for rabbitmq-server")?;
    let path = String::from_utf8_lossy(&on_path.stdout).trim().to_string();
    Path::new(&path)
        .parent()
        .filter(|_| on_path.status.success())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            anyhow!("rabbitmq-server not found: install RabbitMQ's server or set RELANCE_TEST_RABBITMQ_BIN")
        })
}

/// A free port that RabbitMQ's own tools do not use: not the shared node's distribution port
/// (25672) nor the range rabbitmqctl listens on (35672-35682).
fn free_port() -> u16 {
    loop {
        let port = crate::free_port();
        if port != 25672 && !(35672..=35682).contains(&port) {
            return port;
        }
    }
}

impl PrivateRabbitMq {
    /// Creates and starts the node, waiting until it accepts AMQP connections; it is stopped
    /// (by its own process id) and its folder removed on drop.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_node(false)
    }

    /// As [`PrivateRabbitMq::start`], with the `rabbitmq_prometheus` plugin serving per-queue
    /// metrics on 127.0.0.1:[`PrivateRabbitMq::prometheus_port`] (as compose.yaml's broker does).
    pub fn start_with_prometheus() -> anyhow::Result<Self> {
        Self::start_node(true)
    }

    /// Starts `size` nodes with one Erlang cookie and joins them into one cluster (the first
    /// node's), as an operator's three-node cluster; each is stopped and removed on drop.
    pub fn start_cluster(size: usize) -> anyhow::Result<Vec<Self>> {
        let cookie = format!(
            "RELANCETESTCLUSTER{}",
            uuid::Uuid::new_v4().simple().to_string().to_uppercase()
        );
        let mut nodes: Vec<Self> = Vec::new();
        for _ in 0..size {
            let node = Self::start_node_with(false, Some(&cookie))?;
            if let Some(first) = nodes.first() {
                node.ctl(&["stop_app"])?;
                node.ctl(&["join_cluster", &first.node])?;
                node.start_app()?;
            }
            nodes.push(node);
        }
        Ok(nodes)
    }

    /// The client properties of every AMQP connection made to this node (one per line; each
    /// names its `connection_name`, e.g. `relance-renderer`). `list_connections` lists the
    /// whole cluster's, whichever node is asked: those made to this node's port are kept.
    pub fn connections(&self) -> anyhow::Result<String> {
        let all = self.ctl_output(&["list_connections", "--silent", "port", "client_properties"])?;
        let port = self.port.to_string();
        Ok(all
            .lines()
            .filter(|line| line.split_whitespace().next() == Some(port.as_str()))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn start_node(prometheus: bool) -> anyhow::Result<Self> {
        Self::start_node_with(prometheus, None)
    }

    fn start_node_with(prometheus: bool, shared_cookie: Option<&str>) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        let prometheus_port = prometheus.then(|| loop {
            let candidate = free_port();
            if candidate != port && candidate != dist_port {
                break candidate;
            }
        });
        let id = uuid::Uuid::new_v4().simple().to_string();
        let node = format!("relance-test-{}@localhost", &id[..12]);
        let dir = std::env::temp_dir().join(format!("relance-rabbitmq-{port}-{id}"));
        std::fs::create_dir_all(&dir).context("creating the node's folder")?;
        let write = |name: &str, content: &str| {
            std::fs::write(dir.join(name), content).with_context(|| format!("writing {name}"))
        };
        // Only this node's listener, on the loopback interface.
        let mut conf = format!("listeners.tcp.local = 127.0.0.1:{port}\n");
        if let Some(metrics) = prometheus_port {
            conf.push_str(&format!(
                "prometheus.tcp.port = {metrics}\nprometheus.tcp.ip = 127.0.0.1\nprometheus.return_per_object_metrics = true\n"
            ));
        }
        write("rabbitmq.conf", &conf)?;
        write("advanced.config", "[].\n")?;
        // No management plugin: it would take the shared node's port 15672. The Prometheus
        // plugin listens on a port of this node's own.
        let plugins = if prometheus {
            "[rabbitmq_prometheus].\n"
        } else {
            "[].\n"
        };
        write("enabled_plugins", plugins)?;
        // Replaces /etc/rabbitmq/rabbitmq-env.conf, which names the shared node.
        write("rabbitmq-env.conf", "")?;
        // The cookie rabbitmqctl and the node share (through HOME), not the shared node's.
        let cookie = dir.join(".erlang.cookie");
        let cookie_value = match shared_cookie {
            Some(shared) => shared.to_string(),
            None => format!("RELANCETEST{}", id.to_uppercase()),
        };
        write(".erlang.cookie", &cookie_value)?;
        set_owner_only(&cookie)?;
        let mut server = Self {
            port,
            node,
            prometheus_port,
            dist_port,
            dir,
            bin,
            server: None,
        };
        server.start_again()?;
        Ok(server)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The environment the scripts read (rabbitmq-env, rabbitmq-defaults): every path in
    /// this node's folder.
    fn environment(&self) -> Vec<(&'static str, String)> {
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        vec![
            ("HOME", path("")),
            ("RABBITMQ_NODENAME", self.node.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_PID_FILE", path("node.pid")),
            // The distribution on the loopback interface only, and epmd too should this
            // node have to start one.
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
        ]
    }

    /// Starts the node (after [`PrivateRabbitMq::stop`]) and waits until it accepts AMQP
    /// connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            bail!("the node {} is already running", self.node);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))
            .context("opening the node's output file")?;
        let child = Command::new(self.bin.join("rabbitmq-server"))
            .envs(self.environment())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the output file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.join("rabbitmq-server").display()))?;
        self.server = Some(child);
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return self.ctl(&["await_startup"]);
            }
            if let Some(child) = self.server.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.server = None;
                    bail!(
                        "the node {} exited at start ({status}): {}",
                        self.node,
                        self.output_tail()
                    );
                }
            }
            if start.elapsed() > BOOT_DEADLINE {
                bail!(
                    "the node {} did not accept connections within {BOOT_DEADLINE:?}: {}",
                    self.node,
                    self.output_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `rabbitmqctl -n <this node> <args>`, with this node's cookie.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        self.ctl_output(args).map(|_| ())
    }

    /// [`PrivateRabbitMq::ctl`], returning what it printed.
    fn ctl_output(&self, args: &[&str]) -> anyhow::Result<String> {
        let program = self.bin.join("rabbitmqctl");
        let output = Command::new(&program)
            .args(["-n", &self.node])
            .args(args)
            .envs(self.environment())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl -n {} {args:?} failed: {}{}",
                self.node,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the broker application, as an administrator's restart does: every connection
    /// is closed and no new one is accepted, the Erlang node stays up.
    pub fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"])
    }

    /// Starts the broker application again and waits until it has booted.
    pub fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"])?;
        self.ctl(&["await_startup"])
    }

    /// Stops the whole node by its own process: SIGTERM to the server script (which stops
    /// the Erlang VM gracefully), SIGKILL to both if that takes longer than a deadline.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if child.try_wait().context("waiting for the node")?.is_some() {
                return Ok(());
            }
            if start.elapsed() > STOP_DEADLINE {
                // The VM's own pid, which it wrote at start.
                if let Ok(pid) = std::fs::read_to_string(self.dir.join("node.pid")) {
                    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                }
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the node {} did not stop within {STOP_DEADLINE:?}: killed",
                    self.node
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(unix)]
fn set_owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Erlang refuses a cookie file that others can read.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
        .with_context(|| format!("restricting {}", path.display()))
}

#[cfg(not(unix))]
fn set_owner_only(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
