-- Notes for XSOAR incidents' war rooms (the triage, the IR plan), queued by the projector's
-- fold for tickets that came from XSOAR and sent by the XSOAR poller when
-- `[xsoar] write_notes` is on. Not a projection: a refold never writes a note twice.
CREATE TABLE xsoar_notes (
    note_id         TEXT    PRIMARY KEY,   -- <ticket>/<triage|plan>
    incident        TEXT    NOT NULL,      -- the XSOAR incident id
    body            TEXT    NOT NULL,      -- markdown
    created_ms      INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'queued',  -- queued | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT
) WITHOUT ROWID;
CREATE INDEX xsoar_notes_due ON xsoar_notes (status, next_attempt_ms);
