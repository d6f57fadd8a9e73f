//! The SMS gateway and postal service adapters against a local HTTP server that plays the
//! provider, its error answers included; and the outbox folders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::{TimeZone, Utc};
use futures_util::future::BoxFuture;
use relance_domain::{Channel, Clock, SimulatedClock, StepKind, Tone};
use relance_sender::courier::{Courier, DeliveryError, DeliveryGate, Parcel};
use relance_sender::postal::{
    HttpPostalService, LetterCourier, LetterUpload, PostalOutbox, PostalService, Posted, PostedDocument,
};
use relance_sender::sms::{HttpSmsGateway, OutgoingSms, SmsCourier, SmsGateway, SmsOutbox, SmsProvider};
use relance_storage::steps::{DeliveryStage, RenderedMessage, StepRecord, StepStatus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the provider received, and the answers it gives in turn (the last one repeats).
#[derive(Clone, Default)]
struct Provider {
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
}

async fn answer(
    State(p): State<Provider>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    p.received.lock().unwrap().push((headers, body));
    let mut answers = p.answers.lock().unwrap();
    let (status, body) = if answers.len() > 1 {
        answers.pop_front().unwrap()
    } else {
        answers.front().cloned().unwrap_or((200, json!({})))
    };
    (StatusCode::from_u16(status).unwrap(), Json(body))
}

/// Never answers: for timeouts.
async fn hang() -> StatusCode {
    std::future::pending::<()>().await;
    StatusCode::OK
}

async fn start(answers: Vec<(u16, Value)>) -> (String, Provider) {
    let provider = Provider::default();
    provider.answers.lock().unwrap().extend(answers);
    let app = Router::new()
        .route("/v1/messages", post(answer))
        .route("/v1/letters", post(answer))
        .route("/hang", post(hang))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), provider)
}

fn sms() -> OutgoingSms {
    OutgoingSms {
        to: "+33612345678".into(),
        from: "Exemple".into(),
        text: "Exemple SAS : facture F-1 impayée (1 500,00 €).".into(),
        reference: "relance-sms_1-0001".into(),
        invoice_number: "F-1".into(),
    }
}

#[tokio::test]
async fn the_gateway_receives_the_message_with_credentials_and_the_idempotency_key() {
    let (base, provider) = start(vec![(200, json!({ "message_id": "gw-42", "status": "queued" }))]).await;
    let gateway = HttpSmsGateway::new(
        &format!("{base}/v1/messages"),
        Some("s3cret".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    let accepted = gateway.send(&sms()).await.unwrap();
    assert_eq!(accepted.message_id.as_deref(), Some("gw-42"));
    assert!(
        accepted.answer.contains("200") && accepted.answer.contains("gw-42"),
        "{}",
        accepted.answer
    );
    let received = provider.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["idempotency-key"], "relance-sms_1-0001");
    assert_eq!(
        body,
        &json!({ "to": "+33612345678", "from": "Exemple", "text": "Exemple SAS : facture F-1 impayée (1 500,00 €).", "reference": "relance-sms_1-0001" })
    );

    // Credentials in the URL go as basic authentication.
    let (base, provider) = start(vec![(201, json!({ "id": 7 }))]).await;
    let with_user = base.replace("http://", "http://acme:pa55@");
    let gateway =
        HttpSmsGateway::new(&format!("{with_user}/v1/messages"), None, Duration::from_secs(5)).unwrap();
    assert_eq!(
        gateway.send(&sms()).await.unwrap().message_id.as_deref(),
        Some("7")
    );
    let auth = provider.received.lock().unwrap()[0].0["authorization"].clone();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("acme:pa55")
    );
    assert_eq!(auth, expected.as_str());
}

#[tokio::test]
async fn server_errors_and_timeouts_are_transient_and_refusals_permanent() {
    let (base, _) = start(vec![
        (500, json!({ "error": "internal" })),
        (503, json!({ "error": "maintenance" })),
        (429, json!({ "error": "slow down" })),
        (400, json!({ "error": "invalid destination number" })),
    ])
    .await;
    let gateway = HttpSmsGateway::new(&format!("{base}/v1/messages"), None, Duration::from_secs(5)).unwrap();
    for status in ["500", "503", "429"] {
        match gateway.send(&sms()).await {
            Err(DeliveryError::Transient(reason)) => assert!(reason.contains(status), "{reason}"),
            other => panic!("{status}: {other:?}"),
        }
    }
    match gateway.send(&sms()).await {
        Err(DeliveryError::Permanent(reason)) => {
            assert!(
                reason.contains("400") && reason.contains("invalid destination number"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    let hanging = HttpSmsGateway::new(&format!("{base}/hang"), None, Duration::from_millis(300)).unwrap();
    assert!(matches!(
        hanging.send(&sms()).await,
        Err(DeliveryError::Transient(_))
    ));

    // Nobody listening: transient too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = HttpSmsGateway::new(
        &format!("http://127.0.0.1:{port}/v1"),
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(matches!(
        closed.send(&sms()).await,
        Err(DeliveryError::Transient(_))
    ));
}

fn letter(at_hour: u32) -> LetterUpload {
    LetterUpload {
        reference: "relance-formal_notice-0002".into(),
        invoice_number: "F-2".into(),
        step: "formal_notice".into(),
        step_id: uuid::Uuid::nil(),
        registered: true,
        recipient: vec![
            "ACME Industrie SA".into(),
            "12 rue des Forges".into(),
            "69002 Lyon".into(),
        ],
        documents: vec![
            PostedDocument::new("F-2-formal_notice.pdf".into(), b"%PDF-1.7 letter".to_vec()),
            PostedDocument::new("F-2.pdf".into(), b"%PDF-1.4 invoice".to_vec()),
        ],
        at: Utc.with_ymd_and_hms(2026, 3, 20, at_hour, 0, 0).unwrap(),
    }
}

#[tokio::test]
async fn the_postal_api_receives_the_documents_and_the_address_and_returns_a_tracking_number() {
    let (base, provider) = start(vec![
        (502, json!({ "error": "bad gateway" })),
        (200, json!({ "id": "L-1", "tracking_number": "1A23456789012" })),
    ])
    .await;
    let service = HttpPostalService::new(
        &format!("{base}/v1/letters"),
        Some("t0k".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(
        service.post(&letter(9)).await,
        Err(DeliveryError::Transient(_))
    ));
    let posted = service.post(&letter(9)).await.unwrap();
    assert_eq!(posted.reference, "1A23456789012");
    let received = provider.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "the retry is the same request");
    assert_eq!(received[0].1, received[1].1);
    let (headers, body) = &received[1];
    assert_eq!(headers["idempotency-key"], "relance-formal_notice-0002");
    assert_eq!(headers["authorization"], "Bearer t0k");
    assert_eq!(body["registered"], json!(true));
    assert_eq!(body["recipient"]["name"], json!("ACME Industrie SA"));
    assert_eq!(
        body["recipient"]["address_lines"],
        json!(["12 rue des Forges", "69002 Lyon"])
    );
    let documents = body["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 2);
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(documents[0]["content_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(pdf, b"%PDF-1.7 letter");
    assert_eq!(documents[0]["sha256"], json!(hex::encode(Sha256::digest(&pdf))));
}

#[tokio::test]
async fn the_outbox_writes_each_letter_once_with_its_manifest_line() {
    let dir = std::env::temp_dir().join(format!("relance-postal-{}", uuid::Uuid::new_v4().simple()));
    let outbox = PostalOutbox::new(dir.clone());
    let first = outbox.post(&letter(9)).await.unwrap();
    let again = outbox.post(&letter(9)).await.unwrap();
    assert_eq!(first, again);
    let folder = dir.join("2026-03-20");
    let manifest = std::fs::read_to_string(folder.join("manifest.jsonl")).unwrap();
    let lines: Vec<Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{manifest}");
    let line = &lines[0];
    assert_eq!(line["invoice"], json!("F-2"));
    assert_eq!(line["step"], json!("formal_notice"));
    assert_eq!(line["registered"], json!(true));
    assert_eq!(line["address"], json!(["12 rue des Forges", "69002 Lyon"]));
    let pdf = std::fs::read(folder.join(line["file"].as_str().unwrap())).unwrap();
    assert_eq!(pdf, b"%PDF-1.7 letter");
    assert_eq!(line["sha256"], json!(hex::encode(Sha256::digest(&pdf))));
    assert_eq!(
        std::fs::read(folder.join("F-2-formal_notice-invoice.pdf")).unwrap(),
        b"%PDF-1.4 invoice"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A gate that lets every delivery through, on a clock the test moves.
struct ClockGate(SimulatedClock);

impl DeliveryGate for ClockGate {
    fn reached(&self, _stage: DeliveryStage) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn confirm(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn now(&self) -> chrono::DateTime<Utc> {
        self.0.now()
    }
}

/// The outbox folder, holding the letter of `held` until the test releases it.
struct HeldOutbox {
    outbox: PostalOutbox,
    held: String,
    entered: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

impl PostalService for HeldOutbox {
    fn post<'a>(&'a self, letter: &'a LetterUpload) -> BoxFuture<'a, Result<Posted, DeliveryError>> {
        Box::pin(async move {
            if letter.invoice_number == self.held {
                self.entered.notify_one();
                let _released = self.release.acquire().await.unwrap();
            }
            self.outbox.post(letter).await
        })
    }
}

/// A claimed formal notice by letter for `invoice`, claimed at `at`.
fn letter_parcel(invoice: &str, at: chrono::DateTime<Utc>) -> Parcel {
    let pdf = format!("%PDF-1.7 formal notice {invoice}").into_bytes();
    let sha256 = hex::encode(Sha256::digest(&pdf));
    let step_id = uuid::Uuid::new_v4();
    Parcel {
        step: StepRecord {
            id: step_id,
            invoice_id: uuid::Uuid::new_v4(),
            invoice_number: invoice.into(),
            name: "formal_notice".into(),
            kind: StepKind::Reminder,
            position: 4,
            channel: Channel::Letter,
            template: "formal_notice".into(),
            tone: Tone::Formal,
            due_at: at,
            status: StepStatus::Sending,
            emitted_on: Some(at.date_naive()),
        },
        rendered: RenderedMessage {
            step_id,
            channel: Channel::Letter,
            message_id: format!("relance-formal_notice-{invoice}"),
            recipients: vec![
                "ACME Industrie SA".into(),
                "12 rue des Forges".into(),
                "69002 Lyon".into(),
            ],
            cc: vec![],
            subject: "Mise en demeure".into(),
            body_text: "Mise en demeure de payer".into(),
            body_html: None,
            attach_invoice: false,
            rendered_at: at,
        },
        invoice_pdf: None,
        document: Some((pdf, sha256)),
        statement: None,
        creditor: Default::default(),
        at,
        request_receipt: false,
    }
}

/// The invoices whose letters the outbox's manifest of `day` lists.
fn manifest_invoices(dir: &std::path::Path, day: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(day).join("manifest.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["invoice"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_letter_that_waited_for_its_turn_past_midnight_goes_in_the_new_days_folder() {
    let dir = std::env::temp_dir().join(format!("relance-postal-{}", uuid::Uuid::new_v4().simple()));
    let evening = Utc.with_ymd_and_hms(2026, 3, 20, 23, 58, 0).unwrap();
    let clock = SimulatedClock::starting_at(evening);
    let service = Arc::new(HeldOutbox {
        outbox: PostalOutbox::new(dir.clone()),
        held: "F-A".into(),
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    // One letter at the postal service at a time.
    let courier = Arc::new(LetterCourier::new(service.clone()).limited(1));
    let gate = Arc::new(ClockGate(clock.clone()));
    let deliver = |invoice: &str| {
        let (courier, gate) = (courier.clone(), gate.clone());
        let parcel = letter_parcel(invoice, evening);
        tokio::spawn(async move { courier.deliver(&parcel, gate.as_ref()).await })
    };
    // F-A takes the one turn and is held at the postal service; F-B, claimed the same
    // evening, waits for the turn until after midnight.
    let first = deliver("F-A");
    tokio::time::timeout(Duration::from_secs(10), service.entered.notified())
        .await
        .expect("F-A reaches the postal service");
    let second = deliver("F-B");
    clock.set(Utc.with_ymd_and_hms(2026, 3, 21, 0, 1, 0).unwrap());
    service.release.add_permits(1);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();

    assert_eq!(manifest_invoices(&dir, "2026-03-20"), ["F-A"]);
    assert_eq!(manifest_invoices(&dir, "2026-03-21"), ["F-B"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A gate whose last check waits until the test releases it, on a clock the test moves.
struct HeldGate {
    clock: SimulatedClock,
    entered: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

impl DeliveryGate for HeldGate {
    fn reached(&self, _stage: DeliveryStage) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn confirm(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async {
            self.entered.notify_one();
            let _released = self.release.acquire().await.unwrap();
            Ok(())
        })
    }
    fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }
}

#[tokio::test]
async fn a_text_message_whose_last_check_ended_past_midnight_goes_in_the_new_days_file() {
    let dir = std::env::temp_dir().join(format!("relance-sms-{}", uuid::Uuid::new_v4().simple()));
    let evening = Utc.with_ymd_and_hms(2026, 3, 20, 23, 59, 0).unwrap();
    let clock = SimulatedClock::starting_at(evening);
    let courier = SmsCourier::new(SmsProvider::Outbox(SmsOutbox::new(dir.clone())), "Exemple".into());
    let mut parcel = letter_parcel("F-S", evening);
    parcel.step.channel = Channel::Sms;
    parcel.rendered.channel = Channel::Sms;
    parcel.rendered.recipients = vec!["+33612345678".into()];
    parcel.document = None;
    let gate = HeldGate {
        clock: clock.clone(),
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    };
    // Claimed at 23:59; its last check is still waiting (for the database) at midnight.
    let delivery = courier.deliver(&parcel, &gate);
    let answered = async {
        tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
            .await
            .expect("the text message reaches its last check");
        clock.set(Utc.with_ymd_and_hms(2026, 3, 21, 0, 0, 30).unwrap());
        gate.release.add_permits(1);
    };
    let (delivered, ()) = tokio::join!(delivery, answered);
    delivered.unwrap();

    assert!(!dir.join("2026-03-20").join("sms.jsonl").exists());
    let file = std::fs::read_to_string(dir.join("2026-03-21").join("sms.jsonl")).unwrap();
    let line: Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    assert_eq!(line["invoice"], "F-S", "{file}");
    assert_eq!(line["at"], "2026-03-21T00:00:30Z", "{file}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_letter_resent_just_after_midnight_is_not_written_again() {
    let dir = std::env::temp_dir().join(format!("relance-postal-{}", uuid::Uuid::new_v4().simple()));
    let outbox = PostalOutbox::new(dir.clone());
    let evening = letter(23);
    let first = outbox.post(&evening).await.unwrap();
    // The same letter (same reference) again at 01:00 the next day: an ambiguous delivery
    // resent by policy.
    let mut resent = evening.clone();
    resent.at = Utc.with_ymd_and_hms(2026, 3, 21, 1, 0, 0).unwrap();
    let again = outbox.post(&resent).await.unwrap();
    assert_eq!(first.reference, again.reference);
    assert_eq!(manifest_invoices(&dir, "2026-03-20"), ["F-2"]);
    assert!(!dir.join("2026-03-21").join("manifest.jsonl").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_text_message_resent_just_after_midnight_is_not_written_again() {
    let dir = std::env::temp_dir().join(format!("relance-sms-{}", uuid::Uuid::new_v4().simple()));
    let courier = SmsCourier::new(SmsProvider::Outbox(SmsOutbox::new(dir.clone())), "Exemple".into());
    let mut parcel = letter_parcel("F-T", Utc.with_ymd_and_hms(2026, 3, 20, 23, 59, 0).unwrap());
    parcel.step.channel = Channel::Sms;
    parcel.rendered.channel = Channel::Sms;
    parcel.rendered.recipients = vec!["+33612345678".into()];
    parcel.document = None;
    let before = ClockGate(SimulatedClock::starting_at(parcel.at));
    let first = courier.deliver(&parcel, &before).await.unwrap();
    let after = ClockGate(SimulatedClock::starting_at(
        Utc.with_ymd_and_hms(2026, 3, 21, 0, 30, 0).unwrap(),
    ));
    let again = courier.deliver(&parcel, &after).await.unwrap();
    assert_eq!(first.reference, again.reference);
    let lines = std::fs::read_to_string(dir.join("2026-03-20").join("sms.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(!dir.join("2026-03-21").join("sms.jsonl").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
