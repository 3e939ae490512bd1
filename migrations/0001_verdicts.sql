-- The verdict store: one row per role decision, projected from soc.audit.
CREATE TABLE verdicts (
    audit_ms        INTEGER NOT NULL,   -- the soc.audit entry this row was folded from:
    audit_seq       INTEGER NOT NULL,   -- its id makes the fold idempotent
    ticket          TEXT    NOT NULL,
    site            TEXT,
    role            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,   -- the event (AlertTriaged, Tier2Analysis, ...)
    verdict         TEXT    NOT NULL,
    confidence      REAL,
    reasoner        TEXT    NOT NULL,
    wall_time_ms    REAL    NOT NULL,
    tool_calls_made INTEGER NOT NULL,
    tokens_in       INTEGER NOT NULL,
    tokens_out      INTEGER NOT NULL,
    at_ms           INTEGER NOT NULL,   -- when the decision was made
    PRIMARY KEY (audit_ms, audit_seq)
) WITHOUT ROWID;
CREATE INDEX verdicts_ticket ON verdicts (ticket);
CREATE INDEX verdicts_role_at ON verdicts (role, at_ms);

-- How far each projection has folded its log.
CREATE TABLE checkpoints (
    projection TEXT    PRIMARY KEY,
    audit_ms   INTEGER NOT NULL,
    audit_seq  INTEGER NOT NULL
);
