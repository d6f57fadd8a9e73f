//! A counting SMTP sink: a fake mail server at the world's edge, fast enough not to be the
//! limit. It speaks plain SMTP (no TLS, no AUTH, no PIPELINING advertised), answers
//! 220/250/354/250/221 and counts the sessions opened and the messages accepted (each final
//! dot answered 250). It keeps nothing of the messages. It can answer each final dot after
//! a latency, as a real mail server does (queueing to disk, filtering: tens to hundreds of
//! milliseconds): a sender copy then waits on the network, not on the machine's cores,
//! which is how the benchmark shows what a second copy adds where the machine is not the
//! limit (`relance-bench pipeline --smtp-latency-ms`).

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

pub struct Sink {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Listens on a free port of 127.0.0.1, answering each message's final dot `latency`
    /// after it arrives.
    pub async fn start(latency: Duration) -> anyhow::Result<Self> {
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
                    let _ = session(stream, &counters, latency).await;
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

async fn session(stream: TcpStream, counters: &Counters, latency: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 relance-bench sink ESMTP\r\n").await?;
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
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-relance-bench sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
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
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                b"250 OK queued as bench\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(answer).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    #[tokio::test]
    async fn counts_the_mails_lettre_delivers_and_not_those_cut_before_the_final_dot() {
        let sink = Sink::start(Duration::ZERO).await.unwrap();
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
        let sink = Sink::start(latency).await.unwrap();
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
}
