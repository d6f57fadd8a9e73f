//! `GET /customers/{id}/statement.pdf`: the customer's statement of account on today's date
//! (in the customer's time zone), the very document a policy step attaches to a message
//! (`relance_documents::statement`). Reads through the console's read-only role; writes
//! nothing.

use crate::{Failure, Shared};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use relance_documents::statement;

pub(crate) async fn statement_pdf(
    State(console): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let mut conn = console
        .db
        .acquire()
        .await
        .map_err(|e| anyhow::Error::new(e).context("acquiring a connection"))?;
    let mut source = relance_storage::statements::load(&mut conn, &id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no customer {id:?}")))?;
    // One creditor's invoices: that of the customer's latest invoice still owed.
    let creditor = relance_storage::creditors::statement_creditor(
        &mut conn,
        &console.config.settings.creditor,
        &mut source,
        None,
    )
    .await?;
    drop(conn);
    let config = console.config.for_creditor(creditor);
    let today = crate::pages::now(&console)
        .with_timezone(&source.customer.timezone)
        .date_naive();
    let figures = statement::figures(&config, &source, today, None)?;
    let document = statement::document(&config, &figures)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{}\"", document.name),
            ),
        ],
        document.pdf,
    )
        .into_response())
}
