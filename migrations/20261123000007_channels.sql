-- SMS and letters. A letter's PDF is kept as rendered, with its SHA-256, as proof of what
-- was posted; the provider's reference (the SMS gateway's message id, the postal tracking
-- number, or the outbox file) is kept beside the step's delivery proof.
-- Columns of existing tables: the grants of relance_worker already cover them.
ALTER TABLE rendered_messages ADD COLUMN document bytea;
ALTER TABLE rendered_messages ADD COLUMN document_sha256 text
    CHECK (document_sha256 IS NULL OR document_sha256 ~ '^[0-9a-f]{64}$');
ALTER TABLE reminder_steps ADD COLUMN delivery_reference text;
