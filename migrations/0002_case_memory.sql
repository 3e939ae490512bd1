-- Case memory: a read model of soc.audit, folded in the same transactions as the verdicts.

-- One row per case (ticket).
CREATE TABLE cases (
    ticket       TEXT    PRIMARY KEY,
    site         TEXT,
    rule         TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    first_ms     INTEGER NOT NULL,   -- when the case opened (first alert, or first event)
    escalated    INTEGER NOT NULL DEFAULT 0,
    confidence   REAL                -- the latest role confidence
) WITHOUT ROWID;

-- Every event of a case, in audit order: the recorded reasoning trace.
CREATE TABLE case_events (
    ticket    TEXT    NOT NULL,
    audit_ms  INTEGER NOT NULL,
    audit_seq INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL,
    body      TEXT    NOT NULL,      -- the event as JSON
    PRIMARY KEY (ticket, audit_ms, audit_seq)
) WITHOUT ROWID;

-- Typed indicators per case, and in how many cases each value occurs (its rarity).
CREATE TABLE indicators (
    kind     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    ticket   TEXT    NOT NULL,
    first_ms INTEGER NOT NULL,   -- the case's, so recall reads the latest cases off the index
    PRIMARY KEY (kind, value, ticket)
) WITHOUT ROWID;
CREATE INDEX indicators_ticket ON indicators (ticket);
CREATE INDEX indicators_recent ON indicators (kind, value, first_ms);

CREATE TABLE indicator_counts (
    kind  TEXT    NOT NULL,
    value TEXT    NOT NULL,
    cases INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
