//! The mailbox over IMAP (async-imap): `imap://host[:143]` in clear (a local server), or
//! `imaps://host[:993]` over TLS (the public certificate authorities, by aws-lc-rs as lettre).

use anyhow::{anyhow, bail, Context};
use async_imap::Session;
use futures_util::TryStreamExt;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the mailbox is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Reads `imap://host:port` or `imaps://host:port` (a path or credentials in the URL are
/// refused: they have their own settings).
pub fn parse_url(url: &str) -> anyhow::Result<Server> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("imaps://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("imap://") {
        (false, rest)
    } else {
        bail!("RELANCE_IMAP_URL must start with imap:// or imaps://");
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('@') {
        bail!("RELANCE_IMAP_URL is host[:port] only: the folder is RELANCE_IMAP_MAILBOX, the login RELANCE_IMAP_USER");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|e| anyhow!("RELANCE_IMAP_URL: port {port:?}: {e}"))?,
        ),
        None => (authority, if tls { 993 } else { 143 }),
    };
    if host.is_empty() {
        bail!("RELANCE_IMAP_URL has no host");
    }
    Ok(Server {
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
        tls,
    })
}

/// A stream the session runs on: clear or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

pub type ImapSession = Session<Box<dyn Stream>>;

/// Connects and logs in.
pub async fn login(server: &Server, user: &str, password: &str) -> anyhow::Result<ImapSession> {
    let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
        .await
        .with_context(|| format!("connecting to the IMAP server {}:{}", server.host, server.port))?;
    let stream: Box<dyn Stream> = if server.tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS settings for IMAP")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server.host.clone())
            .map_err(|e| anyhow!("IMAP host {:?}: {e}", server.host))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .context("TLS handshake with the IMAP server")?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .context("reading the IMAP server's greeting")?
        .ok_or_else(|| anyhow!("the IMAP server closed the connection before its greeting"))?;
    client
        .login(user, password)
        .await
        .map_err(|(e, _)| anyhow!("IMAP login as {user:?} refused: {e}"))
}

/// Sets `\Seen` on one message.
pub async fn mark_seen(session: &mut ImapSession, uid: u32) -> anyhow::Result<()> {
    let updates: Vec<_> = session
        .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
        .await
        .context("flagging the mail as seen")?
        .try_collect()
        .await
        .context("flagging the mail as seen")?;
    drop(updates);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("imap://127.0.0.1:1143").unwrap(),
            Server {
                host: "127.0.0.1".into(),
                port: 1143,
                tls: false
            }
        );
        assert_eq!(parse_url("imaps://mail.exemple.fr").unwrap().port, 993);
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("imap://u:p@x").is_err());
    }
}
