//! A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), so that
//! a test can stop and restart it without disturbing anything else on the machine; and a
//! streaming replica of it.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// initdb and postgres refuse to run as root: run them as the `postgres` user then.
    as_postgres_user: bool,
}

/// The folder holding initdb and pg_ctl: `RELANCE_TEST_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), or the `PATH`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RELANCE_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .context("looking for initdb")?;
    let path = String::from_utf8_lossy(&on_path.stdout).trim().to_string();
    Path::new(&path)
        .parent()
        .filter(|_| on_path.status.success())
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("initdb not found: install PostgreSQL's server or set RELANCE_TEST_PG_BIN"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    /// Creates and starts the server; it is stopped and removed on drop.
    pub fn start() -> anyhow::Result<Self> {
        let server = Self::new_folder(bin_dir()?)?;
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// Creates and starts a streaming replica of this server (a hot standby, read-only, on a
    /// port of its own), from a base backup of it; stopped and removed on drop.
    pub fn start_replica(&self) -> anyhow::Result<Self> {
        let replica = Self::new_folder(self.bin.clone())?;
        // -R writes the standby's settings (standby.signal, primary_conninfo); -X stream
        // copies the WAL written meanwhile.
        replica.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &replica.data().to_string_lossy(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        )?;
        replica.start_again()?;
        Ok(replica)
    }

    /// A server not yet created: a free port and an empty folder of its own (given to the
    /// `postgres` user when the tests run as root).
    fn new_folder(bin: PathBuf) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("relance-pg-{port}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).context("creating the server's folder")?;
        let as_postgres_user = is_root();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .context("chown")?;
            if !status.success() {
                bail!("could not give {} to the postgres user", dir.display());
            }
        }
        Ok(Self {
            port,
            dir,
            bin,
            as_postgres_user,
        })
    }

    /// `postgres://postgres@127.0.0.1:<port>`, without a database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} {args:?} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server the way an administrator's restart does (`-m fast`: sessions are
    /// disconnected, transactions in progress rolled back).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-m", "fast", "-w", "stop"],
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
