//! The sender's own SMTP client against a server that speaks TLS from the first byte and
//! asks for AUTH (MailDev with `--incoming-secure` and a user), with a certificate issued by
//! a private certificate authority that relance trusts through `RELANCE_SMTP_CA_FILE`.
//! (MailDev hides STARTTLS, so `?tls=required` is covered by the client's own unit tests only.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lettre::message::Mailbox;
use lettre::Message;
use relance_config::Settings;
use relance_sender::courier::{DeliveryError, OpenGate};
use relance_sender::mailer::Mailer;
use relance_tests::MailDev;
use std::path::{Path, PathBuf};

const USER: &str = "relance@acme.test";
const PASSWORD: &str = "p/w:s3cret";

/// A CA, and a certificate for `localhost` it issued; written as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn private_pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "relance test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, server_cert.pem()).unwrap();
    std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
    pki
}

fn mailer(url: &str, ca: Option<&Path>) -> Mailer {
    let mut vars = vec![("SMTP_URL".to_string(), url.to_string())];
    if let Some(ca) = ca {
        vars.push(("RELANCE_SMTP_CA_FILE".to_string(), ca.display().to_string()));
    }
    Mailer::from_settings(&Settings::from_vars(vars).unwrap()).unwrap()
}

fn reminder(subject: &str) -> Message {
    Message::builder()
        .from("Acme <relances@acme.test>".parse::<Mailbox>().unwrap())
        .to("Jeanne Martin <compta@client.test>".parse::<Mailbox>().unwrap())
        .subject(subject)
        .body("Facture F-1 : 1 500,00 EUR".to_string())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_goes_over_tls_with_auth_to_a_server_of_a_private_authority() {
    let dir = std::env::temp_dir().join(format!("relance-smtp-tls-{}", uuid::Uuid::new_v4().simple()));
    let pki = private_pki(&dir);
    let (cert, key) = (pki.cert.display().to_string(), pki.key.display().to_string());
    let mut server = MailDev::start_with(&[
        "--incoming-secure",
        "--incoming-cert",
        &cert,
        "--incoming-key",
        &key,
        "--incoming-user",
        USER,
        "--incoming-pass",
        PASSWORD,
    ])
    .await
    .unwrap();
    // Credentials percent-encoded in the URL, as a user with `@` and `/` must write them.
    let url = |password: &str| {
        format!(
            "smtps://relance%40acme.test:{password}@localhost:{}",
            server.smtp_port
        )
    };

    // Trusted through RELANCE_SMTP_CA_FILE, with the right credentials: delivered.
    let answer = mailer(&url("p%2Fw%3As3cret"), Some(&pki.ca))
        .deliver(reminder("Rappel : facture F-1"), &OpenGate)
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    let received = server.wait_for_emails(1).await;
    assert_eq!(received[0].subject, "Rappel : facture F-1");
    assert_eq!(received[0].to, vec!["compta@client.test".to_string()]);

    // A wrong password: refused by the server for good (not retried for a day).
    let refused = mailer(&url("wrong"), Some(&pki.ca))
        .deliver(reminder("Mauvais mot de passe"), &OpenGate)
        .await;
    assert!(
        matches!(&refused, Err(DeliveryError::Permanent(_))),
        "{refused:?}"
    );

    let subjects: Vec<String> = server.emails().await.into_iter().map(|e| e.subject).collect();
    assert_eq!(subjects, vec!["Rappel : facture F-1".to_string()]);

    // The same server without its authority: the certificate is refused. (Last: MailDev
    // exits on a handshake it cannot finish.)
    let untrusted = mailer(&url("p%2Fw%3As3cret"), None)
        .deliver(reminder("Sans autorité"), &OpenGate)
        .await;
    assert!(
        matches!(&untrusted, Err(DeliveryError::Transient(reason)) if reason.contains("certificate")),
        "{untrusted:?}"
    );

    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ca_file_that_holds_no_certificate_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("relance-smtp-ca-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let settings = Settings::from_vars(vec![
        ("SMTP_URL".to_string(), "smtps://localhost:465".to_string()),
        ("RELANCE_SMTP_CA_FILE".to_string(), ca.display().to_string()),
    ])
    .unwrap();
    let error = format!("{:#}", Mailer::from_settings(&settings).err().unwrap());
    assert!(error.contains("RELANCE_SMTP_CA_FILE"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
