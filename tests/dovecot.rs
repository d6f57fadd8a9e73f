//! A Dovecot IMAP server of the test's own (Debian's dovecot-imapd): its configuration,
//! passwd file, Maildir, state and logs in a temporary folder, on a free loopback port, run in
//! the foreground as the test's child (`dovecot -F -c <conf>`) and killed when dropped. One
//! mailbox, `relance` / `secret`; mails are delivered into it by IMAP APPEND, as a mail
//! server would, and read back to check their flags.

use anyhow::{anyhow, bail, Context};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const USER: &str = "relance";
pub const PASSWORD: &str = "secret";
const BOOT_DEADLINE: Duration = Duration::from_secs(30);

pub struct Dovecot {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

/// `RELANCE_TEST_DOVECOT`, else `/usr/sbin/dovecot`, else `dovecot` on the `PATH`.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("RELANCE_TEST_DOVECOT") {
        return PathBuf::from(bin);
    }
    let debian = Path::new("/usr/sbin/dovecot");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("dovecot")
}

/// The uid and gid the mailbox's files belong to: the test's own, or, as root (which
/// Dovecot refuses as a mail user), Debian's `mail` user (8:8).
fn mail_owner(dir: &Path) -> anyhow::Result<(u32, u32)> {
    let meta = std::fs::metadata(dir).context("reading the temporary folder's owner")?;
    if meta.uid() != 0 {
        return Ok((meta.uid(), meta.gid()));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mail = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"mail") && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)));
    Ok(mail.unwrap_or((8, 8)))
}

impl Dovecot {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("relance-dovecot-{}", uuid::Uuid::new_v4().simple()));
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(dir.join(sub)).context("creating Dovecot's folders")?;
        }
        let (uid, gid) = mail_owner(&dir)?;
        let root = std::fs::metadata(&dir)?.uid() == 0;
        if root {
            for sub in ["mail", "home"] {
                std::os::unix::fs::chown(dir.join(sub), Some(uid), Some(gid))
                    .context("giving the Maildir to the mail user")?;
            }
        }
        let port = crate::free_port();
        let d = dir.display();
        std::fs::write(dir.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n"))?;
        // Not root: every service runs as the test's user, without chroot.
        let unprivileged = if root {
            String::new()
        } else {
            let name = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
            format!(
                "default_internal_user = {name}\ndefault_login_user = {name}\n\
                 service anvil {{\n  chroot =\n}}\nservice imap-login {{\n  chroot =\n}}\n"
            )
        };
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
auth_mechanisms = plain login\nfirst_valid_uid = {uid}\nmail_location = maildir:{d}/mail/%u\n\
passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/home/%u\n}}\n\
service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n\
service submission-login {{\n  inet_listener submission {{\n    port = 0\n  }}\n}}\n\
service lmtp {{\n  unix_listener lmtp {{\n    mode = 0600\n  }}\n}}\n{unprivileged}"
        );
        let conf_file = dir.join("dovecot.conf");
        std::fs::write(&conf_file, conf)?;
        let child = Command::new(binary())
            .arg("-F")
            .arg("-c")
            .arg(&conf_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dovecot (Debian's dovecot-imapd; or set RELANCE_TEST_DOVECOT)")?;
        let mut server = Self { port, dir, child };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("dovecot exited at start ({status}): {}", server.log());
            }
            if let Ok(mut session) = Session::login(port).await {
                session.logout().await;
                return Ok(server);
            }
            if started.elapsed() > BOOT_DEADLINE {
                bail!("dovecot did not answer on port {port}: {}", server.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log, for failures.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// `imap://127.0.0.1:<port>`, as `RELANCE_IMAP_URL`.
    pub fn url(&self) -> String {
        format!("imap://127.0.0.1:{}", self.port)
    }

    /// Delivers a mail into the INBOX (IMAP APPEND).
    pub async fn deliver(&self, mail: &str) -> anyhow::Result<()> {
        let mut session = Session::login(self.port).await?;
        let raw = mail.replace("\r\n", "\n").replace('\n', "\r\n");
        let answer = session
            .literal_command(&format!("APPEND INBOX {{{}}}", raw.len()), raw.as_bytes())
            .await?;
        session.logout().await;
        if !answer.iter().any(|l| l.contains(" OK")) {
            bail!("APPEND refused: {answer:?}");
        }
        Ok(())
    }

    /// Takes `\Seen` off every mail of the INBOX (as if the reader had stopped between its
    /// commit and the flag).
    pub async fn unflag_all(&self) -> anyhow::Result<()> {
        let mut session = Session::login(self.port).await?;
        session.command("SELECT INBOX").await?;
        session.command("STORE 1:* -FLAGS.SILENT (\\Seen)").await?;
        session.logout().await;
        Ok(())
    }

    /// How many mails of the INBOX are flagged `\Seen`, and how many there are.
    pub async fn seen_and_total(&self) -> anyhow::Result<(usize, usize)> {
        let mut session = Session::login(self.port).await?;
        session.command("SELECT INBOX").await?;
        let all = session.command("SEARCH ALL").await?;
        let seen = session.command("SEARCH SEEN").await?;
        session.logout().await;
        let count = |lines: &[String]| {
            lines
                .iter()
                .find(|l| l.starts_with("* SEARCH"))
                .map_or(0, |l| l.split_whitespace().count().saturating_sub(2))
        };
        Ok((count(&seen), count(&all)))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal IMAP client of the test's own (so the checks do not depend on relance's).
struct Session {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    tag: u32,
}

impl Session {
    async fn login(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let (read, writer) = stream.into_split();
        let mut session = Self {
            reader: BufReader::new(read),
            writer,
            tag: 0,
        };
        let mut greeting = String::new();
        session.reader.read_line(&mut greeting).await?;
        if !greeting.starts_with("* OK") {
            bail!("unexpected greeting {greeting:?}");
        }
        let answer = session.command(&format!("LOGIN {USER} {PASSWORD}")).await?;
        if !answer.last().is_some_and(|l| l.contains(" OK")) {
            bail!("login refused: {answer:?}");
        }
        Ok(session)
    }

    /// Sends a command, returns the lines up to and with its tagged answer.
    async fn command(&mut self, command: &str) -> anyhow::Result<Vec<String>> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        self.read_until_tagged(&tag).await
    }

    /// A command ending with a literal (`{n}`): waits for the continuation, sends it.
    async fn literal_command(&mut self, command: &str, literal: &[u8]) -> anyhow::Result<Vec<String>> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        if !line.starts_with('+') {
            return Err(anyhow!("no continuation for the literal: {line:?}"));
        }
        self.writer.write_all(literal).await?;
        self.writer.write_all(b"\r\n").await?;
        self.read_until_tagged(&tag).await
    }

    async fn read_until_tagged(&mut self, tag: &str) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                bail!("the IMAP server closed the connection: {lines:?}");
            }
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line.trim_end().to_string());
            if done {
                return Ok(lines);
            }
        }
    }

    async fn logout(&mut self) {
        let _ = self.command("LOGOUT").await;
    }
}
