-- Where each polling alert source (XSOAR) has read up to: the newest incident time it
-- published. Not a projection: a rebuild keeps it, and a restart resumes from it.
CREATE TABLE source_cursors (
    source     TEXT    PRIMARY KEY,   -- `xsoar:<url>`
    cursor     TEXT    NOT NULL,      -- RFC 3339, UTC, milliseconds
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
