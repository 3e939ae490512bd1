-- Case events in a rowid table, keyed by a unique index on (ticket, audit_ms, audit_seq).
-- In a WITHOUT ROWID table a row keeps at most about a quarter of a page in its b-tree leaf
-- (2,030 bytes of an 8 KiB page): a triage's event (about 2.4 KB of JSON) spilled the rest
-- into an overflow page of its own, mostly empty. The dev tickets' 19,797 events took 11,814
-- pages (92 MiB) for 27 MiB of rows, and the fold wrote a page per triage. A rowid table keeps
-- rows of up to nearly a page inline, appended in audit order; the key moves to the index,
-- whose entries are small. Same columns, same rows, same unique key (`INSERT OR IGNORE` keeps
-- a refold exactly-once).
CREATE TABLE case_events_by_row (
    ticket    TEXT    NOT NULL,
    audit_ms  INTEGER NOT NULL,
    audit_seq INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL,
    body      TEXT    NOT NULL,      -- the event as JSON
    UNIQUE (ticket, audit_ms, audit_seq)
);
INSERT INTO case_events_by_row (ticket, audit_ms, audit_seq, kind, role, at_ms, body)
    SELECT ticket, audit_ms, audit_seq, kind, role, at_ms, body FROM case_events
    ORDER BY audit_ms, audit_seq;
DROP TABLE case_events;
ALTER TABLE case_events_by_row RENAME TO case_events;
CREATE INDEX case_events_by_audit ON case_events (audit_ms, audit_seq);
