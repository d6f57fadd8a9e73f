-- Retention (shared/storage/src/retention.rs): the scheduler deletes published outbox rows
-- and inbox records older than their window, oldest first, a batch at a time. These indexes
-- let each batch find its rows without scanning the tables. Published rows only: the
-- relay's own index (outbox_unpublished) covers the others.
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS processed_messages_processed_at ON processed_messages (processed_at);
