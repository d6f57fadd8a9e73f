//! An SMTP-aware fault proxy in front of the test SMTP server (MailDev cannot refuse mail).
//!
//! Sessions pass through command by command. On demand the proxy answers, without asking
//! the server: `MAIL FROM` with `451` (the server is busy: a transient error), and `RCPT TO`
//! with `550` for chosen recipients (the mailbox does not exist: a permanent error). The
//! client then aborts its transaction, as it would with a real server.
//!
//! It can also hold a session in the middle of a delivery: the server's `354` answer to
//! `DATA` is kept from the client until released (a slow server), so a test can act while a
//! delivery is under way. It notes when the server accepted each message (its answer to the
//! end of DATA), and how many sessions ended in the middle of DATA (aborted: nothing
//! delivered).

use anyhow::{bail, Context};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const TEMPORARY_REFUSAL: &[u8] = b"451 4.3.0 Temporarily unable to accept mail, try again later\r\n";
pub const PERMANENT_REFUSAL: &[u8] = b"550 5.1.1 Mailbox unavailable\r\n";

#[derive(Default)]
struct Faults {
    refuse_temporarily: AtomicBool,
    refused_recipients: Mutex<HashSet<String>>,
    temporary_refusals: AtomicUsize,
    permanent_refusals: AtomicUsize,
    /// While true, the `354` answer to `DATA` waits.
    hold_data: AtomicBool,
    /// Sessions waiting for the `354` now.
    held: AtomicUsize,
    /// While true, the client's end of DATA (the lone dot) waits before it reaches the server.
    hold_end: AtomicBool,
    /// Sessions whose end of DATA waits now.
    held_end: AtomicUsize,
    release: tokio::sync::Notify,
    /// Wall-clock times at which the server accepted a message (2xx to the end of DATA).
    accepted_at: Mutex<Vec<chrono::DateTime<chrono::Utc>>>,
    /// Sessions the client closed in the middle of DATA (the message discarded).
    cut_in_data: AtomicUsize,
}

pub struct SmtpFaultProxy {
    pub port: u16,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

impl SmtpFaultProxy {
    /// Listens on a free local port and relays to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the SMTP proxy")?;
        let port = listener.local_addr()?.port();
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let faults = shared.clone();
                tokio::spawn(async move {
                    // A session cut by either side is what the client must cope with anyway.
                    let _ = relay(client, upstream_port, faults).await;
                });
            }
        });
        Ok(Self { port, faults, task })
    }

    /// While on, every new transaction is refused with a 4xx at `MAIL FROM`.
    pub fn refuse_temporarily(&self, on: bool) {
        self.faults.refuse_temporarily.store(on, Ordering::SeqCst);
    }

    /// From now on, these recipients (compared case-insensitively) get a 5xx at `RCPT TO`.
    pub fn refuse_recipients<I: IntoIterator<Item = String>>(&self, addresses: I) {
        let mut refused = self
            .faults
            .refused_recipients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        refused.extend(addresses.into_iter().map(|a| a.to_lowercase()));
    }

    /// While on, the server's `354` answer to `DATA` is held back until [`Self::release`].
    pub fn hold_data(&self, on: bool) {
        self.faults.hold_data.store(on, Ordering::SeqCst);
    }

    /// Sessions whose `354` is being held now.
    pub fn held(&self) -> usize {
        self.faults.held.load(Ordering::SeqCst)
    }

    /// While on, the client's end of DATA is held back, unseen by the server (which has not
    /// accepted the message yet), until [`Self::release`].
    pub fn hold_end_of_data(&self, on: bool) {
        self.faults.hold_end.store(on, Ordering::SeqCst);
    }

    /// Sessions whose end of DATA is being held now.
    pub fn held_at_end_of_data(&self) -> usize {
        self.faults.held_end.load(Ordering::SeqCst)
    }

    /// Lets every held session go on (and stops holding new ones).
    pub fn release(&self) {
        self.hold_data(false);
        self.hold_end_of_data(false);
        self.faults.release.notify_waiters();
    }

    /// When the server accepted each message, by the wall clock.
    pub fn accepted_at(&self) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.faults
            .accepted_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sessions the client closed in the middle of DATA: nothing was delivered by them.
    pub fn cut_in_data(&self) -> usize {
        self.faults.cut_in_data.load(Ordering::SeqCst)
    }

    pub fn temporary_refusals(&self) -> usize {
        self.faults.temporary_refusals.load(Ordering::SeqCst)
    }

    pub fn permanent_refusals(&self) -> usize {
        self.faults.permanent_refusals.load(Ordering::SeqCst)
    }
}

impl Drop for SmtpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The four-letter command of a client line, upper-cased.
fn verb(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(4)]).to_ascii_uppercase()
}

/// The address of `RCPT TO:<address>`.
fn recipient(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let start = text.find('<')? + 1;
    let end = start + text[start..].find('>')?;
    Some(text[start..end].to_lowercase())
}

async fn relay(client: TcpStream, upstream_port: u16, faults: Arc<Faults>) -> anyhow::Result<()> {
    let upstream = TcpStream::connect(("127.0.0.1", upstream_port))
        .await
        .context("connecting to the SMTP server")?;
    let (client_read, mut client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let (mut client_read, mut upstream_read) = (BufReader::new(client_read), BufReader::new(upstream_read));
    let mut upstream_write = BufWriter::new(upstream_write);
    forward_reply(&mut upstream_read, &mut client_write).await?; // the greeting
    let mut line = Vec::new();
    loop {
        line.clear();
        if client_read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = verb(&line);
        if verb == "MAIL" && faults.refuse_temporarily.load(Ordering::SeqCst) {
            faults.temporary_refusals.fetch_add(1, Ordering::SeqCst);
            client_write.write_all(TEMPORARY_REFUSAL).await?;
            continue;
        }
        if verb == "RCPT" {
            let refused = recipient(&line).is_some_and(|address| {
                faults
                    .refused_recipients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&address)
            });
            if refused {
                faults.permanent_refusals.fetch_add(1, Ordering::SeqCst);
                client_write.write_all(PERMANENT_REFUSAL).await?;
                continue;
            }
        }
        upstream_write.write_all(&line).await?;
        upstream_write.flush().await?;
        let code = if verb == "DATA" {
            let mut held = Vec::new();
            let code = forward_reply(&mut upstream_read, &mut held).await?;
            hold_while_asked(&faults, &faults.hold_data, &faults.held).await;
            client_write.write_all(&held).await?;
            code
        } else {
            forward_reply(&mut upstream_read, &mut client_write).await?
        };
        if verb == "DATA" && code == 354 {
            // The message itself, up to the lone dot.
            loop {
                line.clear();
                if client_read.read_until(b'\n', &mut line).await? == 0 {
                    faults.cut_in_data.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                if line == b".\r\n" {
                    hold_while_asked(&faults, &faults.hold_end, &faults.held_end).await;
                    upstream_write.write_all(&line).await?;
                    break;
                }
                upstream_write.write_all(&line).await?;
            }
            upstream_write.flush().await?;
            let code = forward_reply(&mut upstream_read, &mut client_write).await?;
            if (200..300).contains(&code) {
                faults
                    .accepted_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(chrono::Utc::now());
            }
        }
        if verb == "QUIT" {
            return Ok(());
        }
    }
}

/// Waits while the test holds this point of the session (`hold` on), counted in `held`.
async fn hold_while_asked(faults: &Faults, hold: &AtomicBool, held: &AtomicUsize) {
    if !hold.load(Ordering::SeqCst) {
        return;
    }
    held.fetch_add(1, Ordering::SeqCst);
    while hold.load(Ordering::SeqCst) {
        let released = faults.release.notified();
        // Checked again after registering, so a release in between is not missed; the
        // timeout only bounds a wait for a release that came before registering.
        if !hold.load(Ordering::SeqCst) {
            break;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), released).await;
    }
    held.fetch_sub(1, Ordering::SeqCst);
}

/// Copies one (possibly multi-line) reply to the client; returns its code.
async fn forward_reply<R, W>(upstream: &mut BufReader<R>, client: &mut W) -> anyhow::Result<u16>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = Vec::new();
    loop {
        line.clear();
        if upstream.read_until(b'\n', &mut line).await? == 0 {
            bail!("the SMTP server closed the session");
        }
        client.write_all(&line).await?;
        // `250-...` continues a reply, `250 ...` ends it.
        if line.get(3) != Some(&b'-') {
            let code = String::from_utf8_lossy(&line[..line.len().min(3)])
                .parse()
                .unwrap_or(0);
            return Ok(code);
        }
    }
}
