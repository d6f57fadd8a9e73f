-- A statement of account attached to a rendered message (a policy step with
-- `attach_statement = true`): the PDF, the file name it is sent under, and its SHA-256 as
-- proof of what the customer received beside the message.
ALTER TABLE rendered_messages ADD COLUMN statement bytea;
ALTER TABLE rendered_messages ADD COLUMN statement_name text;
ALTER TABLE rendered_messages ADD COLUMN statement_sha256 text
    CHECK (statement_sha256 IS NULL OR statement_sha256 ~ '^[0-9a-f]{64}$');

-- A rendering superseded before delivery keeps the statement it carried, as the rest.
ALTER TABLE superseded_renderings ADD COLUMN statement bytea;
ALTER TABLE superseded_renderings ADD COLUMN statement_name text;
ALTER TABLE superseded_renderings ADD COLUMN statement_sha256 text;
