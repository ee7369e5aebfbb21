-- The consensus service's tables. Same SQL on SQLite and PostgreSQL (see src/kernel/storage).

-- Immutable numbered policy-set versions: Cedar policies, the schema they were validated
-- against, and the set's own entities (Cedar entity JSON). Version 1 is the embedded genesis set.
CREATE TABLE policy_sets (
    version BIGINT PRIMARY KEY,
    policies TEXT NOT NULL,
    schema_text TEXT NOT NULL,
    entities TEXT NOT NULL,
    -- SHA-256 over the three texts (see store.rs), hex.
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    -- The proposal that made this version; NULL for version 1 and break-glass activations.
    proposal_id TEXT,
    note TEXT
);

-- The active version: exactly one row, replaced atomically on activation.
CREATE TABLE active_set (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL,
    activated_at BIGINT NOT NULL,
    activated_by TEXT NOT NULL
);

-- Proposals: verifying -> voting -> activated | rejected | withdrawn | expired, or
-- verifying -> failed_verification.
CREATE TABLE proposals (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    rationale TEXT NOT NULL,
    proposer TEXT NOT NULL,
    proposer_name TEXT,
    -- The active version when it was proposed; activation requires it still to be active.
    base_version BIGINT NOT NULL,
    policies TEXT NOT NULL,
    schema_text TEXT NOT NULL,
    entities TEXT NOT NULL,
    -- Set for a rollback: the version whose content this proposal restores.
    rollback_to BIGINT,
    status TEXT NOT NULL,
    -- The verification report as JSON.
    verification TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    opened_at BIGINT,
    deadline BIGINT,
    closed_at BIGINT,
    -- The tally at close as JSON.
    outcome TEXT,
    activated_version BIGINT
);
CREATE INDEX proposals_status_deadline ON proposals (status, deadline);

-- One vote per steward and proposal.
CREATE TABLE votes (
    proposal_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    voter_name TEXT,
    choice TEXT NOT NULL,
    cast_at BIGINT NOT NULL,
    UNIQUE (proposal_id, voter)
);
