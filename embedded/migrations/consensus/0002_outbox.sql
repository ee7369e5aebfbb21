-- The transactional outbox of audit events (src/kernel/audit.rs): written in the same transaction
-- as each state change, delivered to the integrity log, deleted once the log has it.
CREATE TABLE _outbox (
    seq_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
