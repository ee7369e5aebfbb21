-- The constitution service's tables. Same SQL on SQLite and PostgreSQL (see src/kernel/storage).

-- Immutable numbered versions. Version 1 is the constitution the service first started with; each
-- later version was made by a ratified amendment. The latest is the active one.
CREATE TABLE versions (
    number BIGINT PRIMARY KEY,
    -- The document as canonical JSON (the bytes its SHA-256 is computed over).
    document TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- The amendment that made this version; NULL for version 1.
    amendment_id TEXT
);

-- Amendments: draft -> voting -> ratified | rejected | withdrawn | expired.
CREATE TABLE amendments (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    rationale TEXT NOT NULL,
    -- The list of changes as JSON.
    changes TEXT NOT NULL,
    proposer TEXT NOT NULL,
    proposer_name TEXT,
    -- The version the changes were written against.
    base_version BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    opened_at BIGINT,
    -- Unix seconds after which voting is over (set when voting opens).
    deadline BIGINT,
    closed_at BIGINT,
    -- The tally at close as JSON.
    outcome TEXT,
    -- The version a ratification created.
    ratified_version BIGINT
);
CREATE INDEX amendments_status_deadline ON amendments (status, deadline);

-- One vote per member and amendment.
CREATE TABLE votes (
    amendment_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    voter_name TEXT,
    choice TEXT NOT NULL,
    cast_at BIGINT NOT NULL,
    UNIQUE (amendment_id, voter)
);
