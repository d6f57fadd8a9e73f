//! One SMTP transaction, spoken command by command so that nothing irrevocable happens
//! before the delivery gate says so: connect (TLS as `SMTP_URL` says), EHLO, STARTTLS, AUTH,
//! MAIL, RCPT, DATA and the message body, then the gate's last check, and only then the end
//! of DATA (`\r\n.\r\n`). When the gate refuses, the connection is closed without the final
//! dot: an SMTP server discards a transaction whose data never ended (RFC 5321, 4.1.1.4),
//! so nothing is delivered. lettre builds the message, the commands and the TLS stream;
//! this module owns the order of the conversation. It knows nothing of the database.

#![allow(deprecated)] // lettre's AsyncNetworkStream: the only public way to its TLS streams.

use crate::courier::{DeliveryError, DeliveryGate};
use anyhow::Context;
use futures_util::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncNetworkStream, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Auth, Data, Ehlo, Mail, Quit, Rcpt, Rset, Starttls};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter, ServerInfo};
use lettre::transport::smtp::response::Response;
use relance_storage::steps::DeliveryStage;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a permanent refusal (5xx) by the SMTP server starts.
pub const SMTP_REFUSAL: &str = "SMTP server refused the message";

/// How the connection is protected.
#[derive(Clone)]
enum Security {
    /// `smtp://`: plain text.
    None,
    /// `smtp://...?tls=required`: STARTTLS, or no delivery.
    Required(TlsParameters),
    /// `smtp://...?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic(TlsParameters),
    /// `smtps://`: TLS from the first byte.
    Wrapper(TlsParameters),
}

/// Where and how to deliver, read from `SMTP_URL` (the same URL forms lettre accepts).
#[derive(Clone)]
pub struct SmtpEndpoint {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// For each step of the conversation (connect, each command, each answer).
    timeout: Duration,
    /// Sessions kept open between messages, shared by the clones of the endpoint.
    idle: Arc<IdleSessions>,
}

/// Connections left open after a delivered message, for the next ones: a new connection
/// costs a TCP (and TLS) handshake, the greeting, EHLO and AUTH. At most `max` are kept; one
/// idle longer than [`MAX_IDLE`] is closed instead of reused (servers drop idle clients).
struct IdleSessions {
    max: usize,
    sessions: Mutex<Vec<(Session, Instant)>>,
}

/// Longest time a connection waits, unused, to be reused.
const MAX_IDLE: Duration = Duration::from_secs(60);

impl IdleSessions {
    fn take(&self) -> Option<Session> {
        let mut sessions = self.sessions.lock().ok()?;
        while let Some((session, since)) = sessions.pop() {
            if since.elapsed() < MAX_IDLE {
                return Some(session);
            }
            // Dropped: the socket closes.
            drop(session);
        }
        None
    }

    /// Keeps the session if there is room; returns it otherwise.
    fn keep(&self, session: Session) -> Option<Session> {
        match self.sessions.lock() {
            Ok(mut sessions) if sessions.len() < self.max => {
                sessions.push((session, Instant::now()));
                None
            }
            _ => Some(session),
        }
    }
}

impl SmtpEndpoint {
    pub fn from_url(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).context("SMTP_URL is not a valid URL")?;
        let host = parsed
            .host_str()
            .context("SMTP_URL has no host")?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_string());
        let params = || TlsParameters::new(host.clone()).context("preparing TLS for SMTP_URL");
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::None, 25),
            ("smtp", Some("required")) => (Security::Required(params()?), 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic(params()?), 587),
            ("smtps", _) => (Security::Wrapper(params()?), 465),
            (scheme, tls) => {
                anyhow::bail!("SMTP_URL: unknown scheme {scheme:?} or tls parameter {tls:?}")
            }
        };
        let decode = |s: &str| -> anyhow::Result<String> {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(Cow::into_owned)
                .context("SMTP_URL: credentials are not valid UTF-8")
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(decode(parsed.username())?, decode(password)?)),
            None => None,
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        Ok(Self {
            port: parsed.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello,
            timeout,
            idle: Arc::new(IdleSessions {
                max: 0,
                sessions: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Keeps up to `size` connections open between messages (`RELANCE_SMTP_POOL_SIZE`; 0:
    /// one connection per message).
    pub fn pooled(mut self, size: usize) -> Self {
        self.idle = Arc::new(IdleSessions {
            max: size,
            sessions: Mutex::new(Vec::new()),
        });
        self
    }

    /// Also trusts the certificate authorities in `pem` (one or several PEM certificates) for
    /// the server's TLS certificate, beside the public ones: a relay with a private CA.
    pub fn trusting(mut self, pem: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----"),
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        );
        let authorities = Certificate::from_pem(pem).context("no valid PEM certificate")?;
        let params = || {
            TlsParameters::builder(self.host.clone())
                .add_root_certificate(authorities.clone())
                .build_rustls()
                .context("preparing TLS with the extra certificate authorities")
        };
        self.security = match self.security {
            Security::None => Security::None,
            Security::Required(_) => Security::Required(params()?),
            Security::Opportunistic(_) => Security::Opportunistic(params()?),
            Security::Wrapper(_) => Security::Wrapper(params()?),
        };
        Ok(self)
    }

    /// Delivers `message` (the formatted email) to the envelope's recipients. Before the end
    /// of DATA, asks `gate`; on refusal closes the connection without it
    /// ([`DeliveryError::Aborted`]). Returns the server's answer to the end of DATA. Its
    /// span is the SMTP call in the reminder's trace (a client span; no address in it).
    #[tracing::instrument(
        name = "smtp",
        skip_all,
        fields(
            otel.name = "smtp send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            server.address = %self.host,
            server.port = self.port,
            smtp.reply_class = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    )]
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        gate: &dyn DeliveryGate,
    ) -> Result<String, DeliveryError> {
        let answer = self.converse(envelope, message, gate).await;
        let span = tracing::Span::current();
        match &answer {
            Ok(reply) => {
                let code = relance_telemetry::metrics::reply_code(reply);
                span.record("smtp.reply_class", relance_telemetry::metrics::reply_class(code));
            }
            Err(e) => {
                span.record("error.type", e.kind());
                span.record("otel.status_code", "error");
            }
        }
        answer
    }

    /// The SMTP conversation of [`SmtpEndpoint::deliver`].
    async fn converse(
        &self,
        envelope: &Envelope,
        message: &[u8],
        gate: &dyn DeliveryGate,
    ) -> Result<String, DeliveryError> {
        let mut session = match self.reuse().await {
            Some(session) => session,
            None => self.open().await?,
        };
        gate.reached(DeliveryStage::Connected).await;
        session.envelope(envelope, message).await?;
        gate.reached(DeliveryStage::EnvelopeAccepted).await;
        session.body(message).await?;
        if let Err(reason) = gate.confirm().await {
            // Closing without the final dot: the server discards the transaction.
            session.close().await;
            return Err(DeliveryError::Aborted(reason));
        }
        let answer = session.end_data().await;
        match answer {
            // The transaction is over: the connection can carry the next message.
            Ok(_) => {
                if let Some(mut extra) = self.idle.keep(session) {
                    extra.quit().await;
                }
            }
            Err(_) => session.quit().await,
        }
        answer
    }

    /// An idle connection that still answers (RSET), if there is one.
    async fn reuse(&self) -> Option<Session> {
        while let Some(mut session) = self.idle.take() {
            if session.command(Rset).await.is_ok() {
                return Some(session);
            }
            session.close().await;
        }
        None
    }

    /// A TCP connection with TCP_NODELAY: SMTP is a conversation of small writes, each
    /// awaiting its answer, which Nagle's algorithm would hold back behind the server's
    /// delayed ACK (about 40 ms a message). Handed to lettre as an existing stream.
    async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        let mut last = None;
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connection timed out",
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("could not resolve to any address")))
    }

    async fn open(&self) -> Result<Session, DeliveryError> {
        let failed = |e: &dyn std::fmt::Display| {
            transient(format!("connection to {}:{} failed: {e}", self.host, self.port))
        };
        let tcp = self.connect().await.map_err(|e| failed(&e))?;
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        if let Security::Wrapper(params) = &self.security {
            stream.upgrade_tls(params.clone()).await.map_err(|e| failed(&e))?;
        }
        let mut session = Session {
            stream: BufReader::new(stream),
            timeout: self.timeout,
            info: None,
        };
        let greeting = session.read().await?;
        session.expect(greeting)?;
        session.ehlo(&self.hello).await?;
        let starttls = match &self.security {
            Security::Required(params) => Some(params.clone()),
            Security::Opportunistic(params) if session.supports(Extension::StartTls) => Some(params.clone()),
            _ => None,
        };
        if let Some(params) = starttls {
            session.command(Starttls).await?;
            session
                .stream
                .get_mut()
                .upgrade_tls(params)
                .await
                .map_err(|e| transient(format!("STARTTLS failed: {e}")))?;
            session.ehlo(&self.hello).await?;
        }
        if let Some(credentials) = &self.credentials {
            session.auth(credentials).await?;
        }
        Ok(session)
    }
}

fn transient(reason: String) -> DeliveryError {
    DeliveryError::Transient(format!("SMTP delivery failed: {reason}"))
}

struct Session {
    stream: BufReader<AsyncNetworkStream>,
    timeout: Duration,
    info: Option<ServerInfo>,
}

impl Session {
    fn supports(&self, extension: Extension) -> bool {
        self.info.as_ref().is_some_and(|i| i.supports_feature(extension))
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let timeout = self.timeout;
        let stream = self.stream.get_mut();
        let io = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(transient(format!("writing to the server: {e}"))),
            Err(_) => Err(transient(format!(
                "writing to the server: timed out after {timeout:?}"
            ))),
        }
    }

    /// Reads one reply, single- or multi-line.
    async fn read(&mut self) -> Result<Response, DeliveryError> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let timeout = self.timeout;
            let read = tokio::time::timeout(timeout, self.stream.read_line(&mut line)).await;
            match read {
                Ok(Ok(0)) => return Err(transient("the server closed the connection".into())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(transient(format!("reading the server's answer: {e}"))),
                Err(_) => return Err(transient(format!("no answer from the server within {timeout:?}"))),
            }
            text.push_str(&line);
            if text.len() > 64 * 1024 {
                return Err(transient("the server's answer is too long".into()));
            }
            // `250-...` continues a reply, `250 ...` ends it.
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        text.parse::<Response>()
            .map_err(|e| transient(format!("unreadable answer {:?}: {e}", text.trim_end())))
    }

    /// A positive answer, or the error it stands for: 4xx transient, 5xx permanent.
    fn expect(&self, response: Response) -> Result<Response, DeliveryError> {
        if response.is_positive() {
            return Ok(response);
        }
        let text = answer_text(&response);
        if text.starts_with('5') {
            Err(DeliveryError::Permanent(format!("{SMTP_REFUSAL}: {text}")))
        } else {
            Err(transient(format!("transient error ({text})")))
        }
    }

    async fn command<C: std::fmt::Display>(&mut self, command: C) -> Result<Response, DeliveryError> {
        self.write(command.to_string().as_bytes()).await?;
        let response = self.read().await?;
        self.expect(response)
    }

    async fn ehlo(&mut self, hello: &ClientId) -> Result<(), DeliveryError> {
        let response = self.command(Ehlo::new(hello.clone())).await?;
        self.info = Some(
            ServerInfo::from_response(&response)
                .map_err(|e| transient(format!("unreadable EHLO answer: {e}")))?,
        );
        Ok(())
    }

    async fn auth(&mut self, credentials: &Credentials) -> Result<(), DeliveryError> {
        let mechanism = self
            .info
            .as_ref()
            .and_then(|i| i.get_auth_mechanism(&[Mechanism::Plain, Mechanism::Login]))
            .ok_or_else(|| {
                DeliveryError::Permanent("the SMTP server offers no usable AUTH mechanism".into())
            })?;
        let auth = Auth::new(mechanism, credentials.clone(), None)
            .map_err(|e| DeliveryError::Permanent(format!("SMTP authentication: {e}")))?;
        let mut response = self.command(auth).await?;
        let mut challenges = 10;
        while response.has_code(334) && challenges > 0 {
            challenges -= 1;
            let next = Auth::new_from_response(mechanism, credentials.clone(), &response)
                .map_err(|e| DeliveryError::Permanent(format!("SMTP authentication: {e}")))?;
            response = self.command(next).await?;
        }
        Ok(())
    }

    /// MAIL, RCPT for each recipient, and DATA (answered 354).
    async fn envelope(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), DeliveryError> {
        let mut options = Vec::new();
        if !message.is_ascii() && self.supports(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let non_ascii = envelope
            .to()
            .iter()
            .chain(envelope.from())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !self.supports(Extension::SmtpUtfEight) {
                return Err(DeliveryError::Permanent(
                    "the SMTP server does not accept non-ASCII addresses (no SMTPUTF8)".into(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        self.command(Mail::new(envelope.from().cloned(), options)).await?;
        for to in envelope.to() {
            self.command(Rcpt::new(to.clone(), vec![])).await?;
        }
        self.command(Data).await?;
        Ok(())
    }

    /// The message, dot-stuffed, without the end of DATA.
    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        let stuffed = dot_stuff(message);
        self.write(&stuffed).await
    }

    /// The end of DATA and the server's answer to it. Past this point an error is not a
    /// failure to deliver: the server may have taken the message ([`DeliveryError::Unanswered`]).
    async fn end_data(&mut self) -> Result<String, DeliveryError> {
        let unanswered = |e: DeliveryError| {
            let reason = match e {
                DeliveryError::Transient(r) | DeliveryError::Permanent(r) | DeliveryError::Aborted(r) => r,
                DeliveryError::Unanswered(r) => r,
            };
            DeliveryError::Unanswered(format!("after the end of DATA: {reason}"))
        };
        self.write(b"\r\n.\r\n").await.map_err(unanswered)?;
        let response = self.read().await.map_err(unanswered)?;
        let response = self.expect(response)?;
        Ok(answer_text(&response))
    }

    async fn quit(&mut self) {
        let _ = self.command(Quit).await;
        self.close().await;
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.stream.get_mut().close()).await;
    }
}

/// `250 2.0.0 Ok: queued as X` as one line.
fn answer_text(response: &Response) -> String {
    format!(
        "{} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    )
}

/// Adds transparency (RFC 5321, 4.5.2): a line starting with a dot gets another. The end of
/// DATA is then sent as `\r\n.\r\n`, as lettre does.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_starting_with_a_dot_gets_another() {
        assert_eq!(dot_stuff(b".a\r\nb.\r\n.\r\nc"), b"..a\r\nb.\r\n..\r\nc".to_vec());
    }

    /// A minimal SMTP server on a local port that accepts every message and counts the
    /// connections it was opened and the messages it took.
    async fn counting_server() -> (
        u16,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader as TokioBufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections, messages) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, m) = (connections.clone(), messages.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let m = m.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = TokioBufReader::new(read).lines();
                    write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                    let mut in_data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let answer: &[u8] = if in_data {
                            if line != "." {
                                continue;
                            }
                            in_data = false;
                            m.fetch_add(1, Ordering::SeqCst);
                            b"250 2.0.0 queued\r\n"
                        } else if line.starts_with("EHLO") {
                            b"250-test\r\n250 8BITMIME\r\n"
                        } else if line == "DATA" {
                            in_data = true;
                            b"354 go on\r\n"
                        } else if line == "QUIT" {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, connections, messages)
    }

    fn envelope() -> Envelope {
        Envelope::new(
            Some("relance@exemple.test".parse().unwrap()),
            vec!["compta@client.test".parse().unwrap()],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_pooled_endpoint_sends_one_message_after_another_on_one_connection() {
        use std::sync::atomic::Ordering;
        let (port, connections, messages) = counting_server().await;
        let url = format!("smtp://127.0.0.1:{port}");
        let pooled = SmtpEndpoint::from_url(&url, Duration::from_secs(5))
            .unwrap()
            .pooled(4);
        for n in 0..5 {
            let body = format!("Subject: {n}\r\n\r\nBonjour\r\n");
            let answer = pooled
                .deliver(&envelope(), body.as_bytes(), &crate::courier::OpenGate)
                .await
                .unwrap();
            assert!(answer.starts_with("250"), "{answer}");
        }
        assert_eq!(messages.load(Ordering::SeqCst), 5);
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection reused");
        // Without a pool: one connection per message.
        let unpooled = SmtpEndpoint::from_url(&url, Duration::from_secs(5))
            .unwrap()
            .pooled(0);
        for _ in 0..2 {
            unpooled
                .deliver(&envelope(), b"Subject: x\r\n\r\nx\r\n", &crate::courier::OpenGate)
                .await
                .unwrap();
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_smtp_socket_is_opened_with_tcp_nodelay() {
        let (port, _, _) = counting_server().await;
        let endpoint =
            SmtpEndpoint::from_url(&format!("smtp://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let stream = endpoint.connect().await.unwrap();
        assert!(stream.nodelay().unwrap());
    }

    #[test]
    fn the_url_forms_lettre_accepts_are_read() {
        let e = SmtpEndpoint::from_url("smtp://127.0.0.1:2525", Duration::from_secs(1)).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 2525));
        assert!(matches!(e.security, Security::None) && e.credentials.is_none());
        let e = SmtpEndpoint::from_url("smtps://u%40x:p%2Fw@mail.test", Duration::from_secs(1)).unwrap();
        assert_eq!(e.port, 465);
        assert!(matches!(e.security, Security::Wrapper(_)) && e.credentials.is_some());
        let e = SmtpEndpoint::from_url("smtp://mail.test?tls=required", Duration::from_secs(1)).unwrap();
        assert!(matches!(e.security, Security::Required(_)) && e.port == 587);
        assert!(SmtpEndpoint::from_url("http://mail.test", Duration::from_secs(1)).is_err());
    }
}
