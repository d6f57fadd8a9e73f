//! A counting SMTP sink: a fake mail server at the world's edge, fast enough not to be the
//! limit. It speaks plain SMTP (no TLS, no AUTH), answers 220/250/354/250/221 and counts the
//! sessions opened and the messages accepted (each final dot answered 250). It keeps
//! nothing of the messages.
//!
//! As real mail servers do, it announces PIPELINING (RFC 2920) unless told not to, and
//! writes its answers when it has read all the commands that arrived together. It can
//! stand for a distant server: each batch of answers leaves a `round_trip` after its
//! commands arrived (the network's round trip), and each final dot is answered a `latency`
//! after it (queueing to disk, filtering: tens to hundreds of milliseconds). A sender copy
//! then waits on the network, not on the machine's cores, which is how the benchmark shows
//! what a second copy adds where the machine is not the limit
//! (`relance-bench pipeline --smtp-latency-ms`) and what pipelining saves per message.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    accepted: AtomicU64,
}

/// How the sink answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkOptions {
    /// Before each final dot's answer.
    pub latency: Duration,
    /// Before each batch of answers.
    pub round_trip: Duration,
    /// Leaves PIPELINING out of the EHLO answer.
    pub no_pipelining: bool,
}

pub struct Sink {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Listens on a free port of 127.0.0.1, answering as `options` say.
    pub async fn start_with(options: SinkOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the SMTP sink")?;
        let addr = listener.local_addr().context("the SMTP sink's address")?;
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counters = shared.clone();
                tokio::spawn(async move {
                    counters.sessions.fetch_add(1, Ordering::Relaxed);
                    // A client that goes away mid-session is the client's business.
                    let _ = session(stream, &counters, options).await;
                });
            }
        });
        Ok(Self { addr, counters, task })
    }

    /// `SMTP_URL` for relance's sender.
    pub fn url(&self) -> String {
        format!("smtp://{}:{}", self.addr.ip(), self.addr.port())
    }

    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> u64 {
        self.counters.sessions.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, counters: &Counters, options: SinkOptions) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut answers: Vec<u8> = Vec::with_capacity(256);
    let round_trip = options.round_trip;
    answers.extend_from_slice(b"220 relance-bench sink ESMTP\r\n");
    flush(&mut answers, &mut write, round_trip).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb: String = line
            .iter()
            .take(4)
            .map(|b| char::from(*b).to_ascii_uppercase())
            .collect();
        match verb.as_str() {
            "EHLO" if options.no_pipelining => {
                answers.extend_from_slice(b"250-relance-bench sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            }
            "EHLO" => answers.extend_from_slice(
                b"250-relance-bench sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            ),
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => answers.extend_from_slice(b"250 OK\r\n"),
            "DATA" => {
                answers.extend_from_slice(b"354 end with <CRLF>.<CRLF>\r\n");
                flush(&mut answers, &mut write, round_trip).await?;
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        // Cut before the final dot: nothing is delivered.
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                if !options.latency.is_zero() {
                    tokio::time::sleep(options.latency).await;
                }
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                answers.extend_from_slice(b"250 OK queued as bench\r\n");
            }
            "QUIT" => {
                answers.extend_from_slice(b"221 bye\r\n");
                return flush(&mut answers, &mut write, round_trip).await;
            }
            _ => answers.extend_from_slice(b"502 command not implemented\r\n"),
        }
        if read.buffer().is_empty() {
            flush(&mut answers, &mut write, round_trip).await?;
        }
    }
}

/// Writes the answers gathered so far, a round trip after the commands that asked for them
/// arrived.
async fn flush(
    answers: &mut Vec<u8>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    round_trip: Duration,
) -> std::io::Result<()> {
    if !round_trip.is_zero() {
        tokio::time::sleep(round_trip).await;
    }
    write.write_all(answers).await?;
    answers.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    #[tokio::test]
    async fn counts_the_mails_lettre_delivers_and_not_those_cut_before_the_final_dot() {
        let sink = Sink::start_with(SinkOptions::default()).await.unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .unwrap()
            .build();
        for n in 0..3 {
            let mail = Message::builder()
                .from("Bench <bench@relance.test>".parse().unwrap())
                .to(format!("c{n}@bench.test").parse().unwrap())
                .subject("Relance : facture échue")
                .body("Bonjour,\r\n.\r\nune ligne qui commence par un point".to_string())
                .unwrap();
            transport.send(mail).await.unwrap();
        }
        assert_eq!(sink.accepted(), 3);

        let mut cut = TcpStream::connect(sink.addr).await.unwrap();
        cut.write_all(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: cut\r\n\r\nno final dot\r\n")
            .await
            .unwrap();
        drop(cut);
        let sessions_before = sink.sessions();
        // A later session still counts, and the cut one never did.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .unwrap()
            .build();
        let mail = Message::builder()
            .from("bench@relance.test".parse().unwrap())
            .to("last@bench.test".parse().unwrap())
            .subject("last")
            .body("last".to_string())
            .unwrap();
        transport.send(mail).await.unwrap();
        assert_eq!(sink.accepted(), 4);
        assert!(sink.sessions() > sessions_before);
    }

    #[tokio::test]
    async fn a_sink_with_a_latency_accepts_each_mail_only_after_it() {
        let latency = std::time::Duration::from_millis(300);
        let sink = Sink::start_with(SinkOptions {
            latency,
            ..SinkOptions::default()
        })
        .await
        .unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .unwrap()
            .build();
        for n in 0..2 {
            let mail = Message::builder()
                .from("bench@relance.test".parse().unwrap())
                .to(format!("c{n}@bench.test").parse().unwrap())
                .subject("slow")
                .body("slow".to_string())
                .unwrap();
            let started = std::time::Instant::now();
            transport.send(mail).await.unwrap();
            assert!(
                started.elapsed() >= latency,
                "answered after {:?}",
                started.elapsed()
            );
        }
        assert_eq!(sink.accepted(), 2);
    }

    /// Reads from `stream` until what it read ends with `end`.
    async fn read_until_end(stream: &mut TcpStream, end: &str) -> String {
        use tokio::io::AsyncReadExt;
        let mut text = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&text).ends_with(end) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&text));
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(text).unwrap()
    }

    #[tokio::test]
    async fn a_distant_sink_answers_a_pipelined_group_a_round_trip_later() {
        // Long enough that answering each command after a round trip of its own (three for
        // the group below) could not pass for one.
        let round_trip = Duration::from_millis(300);
        let sink = Sink::start_with(SinkOptions {
            round_trip,
            ..SinkOptions::default()
        })
        .await
        .unwrap();
        let mut client = TcpStream::connect(sink.addr).await.unwrap();
        let started = std::time::Instant::now();
        read_until_end(&mut client, "ESMTP\r\n").await;
        assert!(
            started.elapsed() >= round_trip,
            "greeting after {:?}",
            started.elapsed()
        );
        client.write_all(b"EHLO x\r\n").await.unwrap();
        let features = read_until_end(&mut client, "SMTPUTF8\r\n").await;
        assert!(features.contains("250-PIPELINING\r\n"), "{features}");
        let started = std::time::Instant::now();
        client
            .write_all(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
            .await
            .unwrap();
        let answers = read_until_end(&mut client, "<CRLF>.<CRLF>\r\n").await;
        let took = started.elapsed();
        assert!(
            took >= round_trip && took < round_trip * 5 / 2,
            "group answered after {took:?}"
        );
        assert_eq!(answers, "250 OK\r\n250 OK\r\n354 end with <CRLF>.<CRLF>\r\n");
        client.write_all(b"Subject: x\r\n\r\nx\r\n.\r\n").await.unwrap();
        read_until_end(&mut client, "queued as bench\r\n").await;
        assert_eq!(sink.accepted(), 1);

        // Told not to, it does not announce PIPELINING.
        let sink = Sink::start_with(SinkOptions {
            no_pipelining: true,
            ..SinkOptions::default()
        })
        .await
        .unwrap();
        let mut client = TcpStream::connect(sink.addr).await.unwrap();
        read_until_end(&mut client, "ESMTP\r\n").await;
        client.write_all(b"EHLO x\r\n").await.unwrap();
        let features = read_until_end(&mut client, "SMTPUTF8\r\n").await;
        assert!(!features.contains("PIPELINING"), "{features}");
    }
}
