//! One SMTP transaction, spoken command by command so that nothing irrevocable happens
//! before the delivery gate says so: connect (TLS as `SMTP_URL` says), EHLO, STARTTLS, AUTH,
//! MAIL, RCPT, DATA and the message body, then the gate's last check, and only then the end
//! of DATA (`\r\n.\r\n`). When the gate refuses, the connection is closed without the final
//! dot: an SMTP server discards a transaction whose data never ended (RFC 5321, 4.1.1.4),
//! so nothing is delivered. lettre builds the message, the commands and the TLS stream;
//! this module owns the order of the conversation. It knows nothing of the database.

#![allow(deprecated)] // lettre's AsyncNetworkStream: the only public way to its TLS streams.

use crate::courier::{DeliveryError, DeliveryGate, RequestLimit};
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
    /// Connections open at once at most, shared by the clones (none: no limit). A sender
    /// handles more messages at once than it has sessions (their database work commits in
    /// larger batches); without a limit, each message beyond the kept sessions would open a
    /// connection of its own and close it after one message.
    connections: RequestLimit,
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
            connections: RequestLimit::default(),
        })
    }

    /// Opens at most `max` connections at once (`RELANCE_SMTP_MAX_CONNECTIONS`; 0: no
    /// limit): a message finding them all in use waits for one to finish its message.
    pub fn limited(mut self, max: usize) -> Self {
        self.connections = RequestLimit::new(max);
        self
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
    /// ([`DeliveryError::Aborted`]). Returns the server's answer to the end of DATA.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        gate: &dyn DeliveryGate,
    ) -> Result<String, DeliveryError> {
        Ok(self.deliver_timed(envelope, message, gate).await?.0)
    }

    /// [`SmtpEndpoint::deliver`], and how long the exchange with the mail server took: from
    /// the moment one of the connections was free (with `limited`, a message may first wait
    /// for one; that wait is neither counted nor part of the SMTP span).
    pub async fn deliver_timed(
        &self,
        envelope: &Envelope,
        message: &[u8],
        gate: &dyn DeliveryGate,
    ) -> Result<(String, Duration), DeliveryError> {
        // Held until the connection is kept for the next message or closed.
        let _connection = self.connections.turn().await;
        let started = Instant::now();
        let answer = self.exchange(envelope, message, gate).await?;
        Ok((answer, started.elapsed()))
    }

    /// The SMTP exchange of one message. Its span is the SMTP call in the reminder's trace (a
    /// client span; no address in it).
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
    async fn exchange(
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
        let mut session = self.accepting_session(envelope, message, gate).await?;
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

    /// A session whose server took the envelope (MAIL, RCPT, DATA answered 354): a kept one
    /// that still answers (RSET, in the same round trip as the envelope where the server
    /// pipelines), or a new one.
    async fn accepting_session(
        &self,
        envelope: &Envelope,
        message: &[u8],
        gate: &dyn DeliveryGate,
    ) -> Result<Session, DeliveryError> {
        let mut connected = false;
        while let Some(mut session) = self.idle.take() {
            if !connected {
                gate.reached(DeliveryStage::Connected).await;
                connected = true;
            }
            match session.envelope(envelope, message, Reset::First).await {
                Ok(()) => return Ok(session),
                // Closed by the server while idle, or no longer in a state to take mail:
                // nothing was begun on it; the next one, or a new one.
                Err(EnvelopeRefusal::Stale) => session.close().await,
                Err(EnvelopeRefusal::Refused(e)) => {
                    session.close().await;
                    return Err(e);
                }
            }
        }
        let mut session = self.open().await?;
        if !connected {
            gate.reached(DeliveryStage::Connected).await;
        }
        match session.envelope(envelope, message, Reset::No).await {
            Ok(()) => Ok(session),
            Err(refusal) => {
                session.close().await;
                Err(refusal.into_error())
            }
        }
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
            pipelining: false,
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
    /// The server announced PIPELINING (RFC 2920) in its last EHLO answer.
    pipelining: bool,
}

/// Whether an envelope on a kept session starts with RSET (which also proves the session
/// still answers).
#[derive(Clone, Copy, PartialEq)]
enum Reset {
    First,
    No,
}

/// Why an envelope was not accepted.
enum EnvelopeRefusal {
    /// A kept session that no longer answers its RSET: nothing was begun on it.
    Stale,
    /// The server refused MAIL, a RCPT or DATA, or the conversation broke during them.
    Refused(DeliveryError),
}

impl EnvelopeRefusal {
    fn into_error(self) -> DeliveryError {
        match self {
            Self::Stale => transient("the server does not answer RSET".into()),
            Self::Refused(e) => e,
        }
    }
}

impl From<DeliveryError> for EnvelopeRefusal {
    fn from(e: DeliveryError) -> Self {
        Self::Refused(e)
    }
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
        // lettre's ServerInfo does not read PIPELINING: a keyword line of its own.
        self.pipelining = response.message().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
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

    /// MAIL, RCPT for each recipient, and DATA (answered 354), after RSET on a kept session.
    /// Where the server pipelines (RFC 2920), they go in one write and their answers are read
    /// in order: one round trip instead of one per command (DATA may end a group; the message
    /// itself waits for the 354). Every answer is read, so that a refusal is the first
    /// refused command's own (later ones only answer "bad sequence").
    async fn envelope(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        reset: Reset,
    ) -> Result<(), EnvelopeRefusal> {
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
                )
                .into());
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        let mut commands = Vec::with_capacity(envelope.to().len() + 3);
        if reset == Reset::First {
            commands.push(Rset.to_string());
        }
        commands.push(Mail::new(envelope.from().cloned(), options).to_string());
        for to in envelope.to() {
            commands.push(Rcpt::new(to.clone(), vec![]).to_string());
        }
        commands.push(Data.to_string());
        // The RSET's failure, if it fails, means a stale session rather than a refusal.
        let stale = |n: usize, e: DeliveryError| {
            if n == 0 && reset == Reset::First {
                EnvelopeRefusal::Stale
            } else {
                EnvelopeRefusal::Refused(e)
            }
        };
        if !self.pipelining {
            for (n, command) in commands.iter().enumerate() {
                self.write(command.as_bytes()).await.map_err(|e| stale(n, e))?;
                let response = self.read().await.map_err(|e| stale(n, e))?;
                self.expect(response).map_err(|e| stale(n, e))?;
            }
            return Ok(());
        }
        self.write(commands.concat().as_bytes())
            .await
            .map_err(|e| stale(0, e))?;
        let mut refused = None;
        for n in 0..commands.len() {
            let response = match self.read().await {
                Ok(response) => response,
                // A broken conversation: no further answer will come.
                Err(e) => return Err(refused.unwrap_or_else(|| stale(n, e))),
            };
            if let Err(e) = self.expect(response) {
                refused.get_or_insert(stale(n, e));
            }
        }
        match refused {
            None => Ok(()),
            Some(refusal) => Err(refusal),
        }
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

    /// How the test server behaves.
    #[derive(Clone, Copy, Default)]
    struct Behaviour {
        /// Announces PIPELINING, and answers a group of commands only once it ends (at
        /// DATA): a client that waits for each answer before the next command gets none.
        pipelining: bool,
        /// Closes the connection after each message (as a server dropping idle clients).
        close_after_message: bool,
        /// Answers 354 to DATA even when no recipient was accepted (RFC 2920 lets a
        /// pipelining server do so; the client must then send no message).
        data_without_recipients: bool,
        /// Answers RSET with 451 (the connection staying open).
        refuse_rset: bool,
        /// Takes this long to accept each message (a busy server): connections overlap.
        accept_delay: Duration,
    }

    /// What the test server saw.
    #[derive(Default)]
    struct Seen {
        connections: std::sync::atomic::AtomicUsize,
        messages: std::sync::atomic::AtomicUsize,
        /// Commands that arrived before the previous one was answered, on a server that
        /// does not pipeline.
        unannounced_pipelining: std::sync::atomic::AtomicUsize,
        /// Connections open now, and the most open at once.
        open: std::sync::atomic::AtomicUsize,
        most_open: std::sync::atomic::AtomicUsize,
    }

    /// Counts a connection open until its handler ends (whichever way it returns).
    struct OpenConnection(Arc<Seen>);

    impl OpenConnection {
        fn new(seen: Arc<Seen>) -> Self {
            use std::sync::atomic::Ordering;
            let now = seen.open.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_open.fetch_max(now, Ordering::SeqCst);
            Self(seen)
        }
    }

    impl Drop for OpenConnection {
        fn drop(&mut self) {
            self.0.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A minimal SMTP server on a local port that accepts every message (but for recipients
    /// at `refused.test`, answered 550) and counts what it saw.
    async fn test_server(behaviour: Behaviour) -> (u16, Arc<Seen>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader as TokioBufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let seen = shared.clone();
                tokio::spawn(async move {
                    let _open = OpenConnection::new(seen.clone());
                    let (read, mut write) = socket.into_split();
                    let mut lines = TokioBufReader::new(read).lines();
                    write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                    let mut in_data = false;
                    let mut recipients = 0;
                    let mut pending = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line != "." {
                                continue;
                            }
                            in_data = false;
                            seen.messages.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(behaviour.accept_delay).await;
                            let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                            if behaviour.close_after_message {
                                return;
                            }
                            continue;
                        }
                        if !behaviour.pipelining && !lines.get_ref().buffer().is_empty() {
                            seen.unannounced_pipelining.fetch_add(1, Ordering::SeqCst);
                        }
                        let (answer, ends_group) = if line.starts_with("EHLO") {
                            let features = if behaviour.pipelining {
                                "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                            } else {
                                "250-test\r\n250 8BITMIME\r\n"
                            };
                            (features, true)
                        } else if line.starts_with("RSET") && behaviour.refuse_rset {
                            recipients = 0;
                            ("451 4.3.0 try again later\r\n", false)
                        } else if line.starts_with("MAIL") || line.starts_with("RSET") {
                            recipients = 0;
                            ("250 ok\r\n", false)
                        } else if line.starts_with("RCPT") {
                            if line.contains("@refused.test") {
                                ("550 5.1.1 no such user\r\n", false)
                            } else {
                                recipients += 1;
                                ("250 ok\r\n", false)
                            }
                        } else if line == "DATA" {
                            if recipients == 0 && !behaviour.data_without_recipients {
                                ("554 5.5.1 no valid recipients\r\n", true)
                            } else {
                                in_data = true;
                                ("354 go on\r\n", true)
                            }
                        } else if line == "QUIT" {
                            pending.push_str("221 bye\r\n");
                            let _ = write.write_all(pending.as_bytes()).await;
                            return;
                        } else {
                            ("250 ok\r\n", true)
                        };
                        pending.push_str(answer);
                        if ends_group || !behaviour.pipelining {
                            if write.write_all(pending.as_bytes()).await.is_err() {
                                return;
                            }
                            pending.clear();
                        }
                    }
                });
            }
        });
        (port, seen)
    }

    fn endpoint(port: u16, pool: usize) -> SmtpEndpoint {
        // A short timeout: a client waiting for an answer the server holds fails quickly.
        SmtpEndpoint::from_url(&format!("smtp://127.0.0.1:{port}"), Duration::from_secs(2))
            .unwrap()
            .pooled(pool)
    }

    async fn send(endpoint: &SmtpEndpoint, to: &str, n: usize) -> Result<String, DeliveryError> {
        let envelope = Envelope::new(
            Some("relance@exemple.test".parse().unwrap()),
            vec![to.parse().unwrap()],
        )
        .unwrap();
        let body = format!("Subject: {n}\r\n\r\nBonjour\r\n");
        endpoint
            .deliver(&envelope, body.as_bytes(), &crate::courier::OpenGate)
            .await
    }

    /// Eight messages at once through an endpoint limited to two connections, to a server
    /// slow to accept each: never more than two connections open, every message delivered,
    /// and the two connections carry them all (kept for the next). Without the limit, the
    /// same eight open more than two at once.
    #[tokio::test]
    async fn a_limited_endpoint_never_has_more_connections_open_than_its_limit() {
        use std::sync::atomic::Ordering;
        let slow = Behaviour {
            accept_delay: Duration::from_millis(50),
            ..Behaviour::default()
        };
        let (port, seen) = test_server(slow).await;
        let limited = endpoint(port, 2).limited(2);
        let answers =
            futures_util::future::join_all((0..8).map(|n| send(&limited, "compta@client.test", n))).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|r| r.starts_with("250"))),
            "{answers:?}"
        );
        assert_eq!(seen.messages.load(Ordering::SeqCst), 8);
        assert_eq!(
            seen.most_open.load(Ordering::SeqCst),
            2,
            "at most two open at once"
        );
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            2,
            "the two kept for the next messages"
        );

        let (port, seen) = test_server(slow).await;
        let unlimited = endpoint(port, 2).limited(0);
        let answers =
            futures_util::future::join_all((0..8).map(|n| send(&unlimited, "compta@client.test", n))).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert!(
            seen.most_open.load(Ordering::SeqCst) > 2,
            "without a limit, more at once"
        );
    }

    #[tokio::test]
    async fn a_pooled_endpoint_sends_one_message_after_another_on_one_connection() {
        use std::sync::atomic::Ordering;
        for pipelining in [false, true] {
            let (port, seen) = test_server(Behaviour {
                pipelining,
                ..Behaviour::default()
            })
            .await;
            let pooled = endpoint(port, 4);
            for n in 0..5 {
                let answer = send(&pooled, "compta@client.test", n).await.unwrap();
                assert!(answer.starts_with("250"), "{answer}");
            }
            assert_eq!(seen.messages.load(Ordering::SeqCst), 5);
            assert_eq!(
                seen.connections.load(Ordering::SeqCst),
                1,
                "one connection reused"
            );
            // Without a pool: one connection per message.
            let unpooled = endpoint(port, 0);
            for n in 0..2 {
                send(&unpooled, "compta@client.test", n).await.unwrap();
            }
            assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
        }
    }

    /// The server holds its answers until DATA ends the group: a client that waited for
    /// MAIL's answer before sending RCPT would time out. With a server that does not
    /// announce PIPELINING, no command leaves before the previous one's answer.
    #[tokio::test]
    async fn the_envelope_is_pipelined_only_where_the_server_announces_it() {
        use std::sync::atomic::Ordering;
        let (port, seen) = test_server(Behaviour {
            pipelining: true,
            ..Behaviour::default()
        })
        .await;
        let pooled = endpoint(port, 1);
        for n in 0..3 {
            // The first on a new session (MAIL, RCPT, DATA), the others on the kept one
            // (RSET first).
            send(&pooled, "compta@client.test", n).await.unwrap();
        }
        assert_eq!(seen.messages.load(Ordering::SeqCst), 3);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

        let (port, seen) = test_server(Behaviour::default()).await;
        let pooled = endpoint(port, 1);
        for n in 0..3 {
            send(&pooled, "compta@client.test", n).await.unwrap();
        }
        assert_eq!(seen.messages.load(Ordering::SeqCst), 3);
        assert_eq!(seen.unannounced_pipelining.load(Ordering::SeqCst), 0);
    }

    /// A refused recipient in a pipelined group is the error told (not the DATA's "no valid
    /// recipients" that follows it), nothing is delivered, and the next message goes.
    #[tokio::test]
    async fn a_refusal_within_a_pipelined_envelope_is_the_refused_commands_own() {
        use std::sync::atomic::Ordering;
        for pipelining in [true, false] {
            let (port, seen) = test_server(Behaviour {
                pipelining,
                ..Behaviour::default()
            })
            .await;
            let pooled = endpoint(port, 2);
            send(&pooled, "compta@client.test", 0).await.unwrap();
            let refused = send(&pooled, "nobody@refused.test", 1).await.unwrap_err();
            match refused {
                DeliveryError::Permanent(reason) => {
                    assert!(reason.contains("550 5.1.1 no such user"), "{reason}")
                }
                other => panic!("expected a permanent refusal, got {other:?}"),
            }
            send(&pooled, "compta@client.test", 2).await.unwrap();
            assert_eq!(seen.messages.load(Ordering::SeqCst), 2);
        }
    }

    /// A kept session the server closed meanwhile fails its RSET: the message goes on a new
    /// connection, as if none had been kept.
    #[tokio::test]
    async fn a_kept_session_the_server_closed_is_replaced_by_a_new_one() {
        for pipelining in [true, false] {
            each_of_three_messages_goes_once_on_a_new_connection(Behaviour {
                pipelining,
                close_after_message: true,
                ..Behaviour::default()
            })
            .await;
        }
    }

    /// Three messages through a pool of two to a server behaving so: each is delivered once,
    /// each on a connection of its own (no kept session could be used).
    async fn each_of_three_messages_goes_once_on_a_new_connection(behaviour: Behaviour) {
        use std::sync::atomic::Ordering;
        let (port, seen) = test_server(behaviour).await;
        let pooled = endpoint(port, 2);
        for n in 0..3 {
            send(&pooled, "compta@client.test", n).await.unwrap();
        }
        assert_eq!(seen.messages.load(Ordering::SeqCst), 3, "each once");
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    }

    /// A pipelining server may answer DATA with 354 although it refused every recipient: the
    /// client sends no message (it closes the connection in DATA, which the server discards)
    /// and tells the refusal.
    #[tokio::test]
    async fn a_354_after_a_refused_recipient_delivers_nothing() {
        use std::sync::atomic::Ordering;
        let (port, seen) = test_server(Behaviour {
            pipelining: true,
            data_without_recipients: true,
            ..Behaviour::default()
        })
        .await;
        let pooled = endpoint(port, 2);
        let refused = send(&pooled, "nobody@refused.test", 0).await.unwrap_err();
        assert!(
            matches!(&refused, DeliveryError::Permanent(r) if r.contains("550 5.1.1")),
            "{refused:?}"
        );
        send(&pooled, "compta@client.test", 1).await.unwrap();
        assert_eq!(seen.messages.load(Ordering::SeqCst), 1, "only the second message");
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            2,
            "the first connection was not kept"
        );
    }

    /// A kept session whose RSET is refused (4xx, the connection open) is not used: in a
    /// pipelined group the envelope after it was accepted, and the client leaves in DATA.
    #[tokio::test]
    async fn a_kept_session_refusing_its_rset_is_replaced_and_nothing_goes_twice() {
        for pipelining in [true, false] {
            each_of_three_messages_goes_once_on_a_new_connection(Behaviour {
                pipelining,
                refuse_rset: true,
                ..Behaviour::default()
            })
            .await;
        }
    }

    #[tokio::test]
    async fn the_smtp_socket_is_opened_with_tcp_nodelay() {
        let (port, _) = test_server(Behaviour::default()).await;
        let stream = endpoint(port, 0).connect().await.unwrap();
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
