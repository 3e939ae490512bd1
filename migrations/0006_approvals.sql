-- Human approval of proposed actions.
--
-- proposals: the IR Lead's ActionProposed events, folded from soc.audit (a projection: a
-- rebuild empties and refills it).
-- decisions: one human decision per proposal (the primary key makes a second one impossible).
-- Not a projection: the approver's decision is the record, kept across rebuilds.
-- outbox: the ActionDecision envelope of each decision, written in the decision's own
-- transaction and published to the bus by the relay, which marks it sent. A crash between the
-- two loses neither: the relay publishes what is unsent, and the bus dedupes on the key.
CREATE TABLE proposals (
    action_id      TEXT    PRIMARY KEY,
    ticket         TEXT    NOT NULL,
    approver_role  TEXT    NOT NULL,
    proposed_by    TEXT    NOT NULL,
    proposed_at_ms INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    body           TEXT    NOT NULL    -- the ActionProposed event, JSON
) WITHOUT ROWID;
CREATE INDEX proposals_by_time ON proposals (proposed_at_ms);

CREATE TABLE decisions (
    action_id     TEXT    PRIMARY KEY,
    decision      TEXT    NOT NULL,    -- approved | rejected
    decided_by    TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    decided_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT    NOT NULL UNIQUE,
    envelope   TEXT    NOT NULL,       -- the Envelope, JSON
    created_ms INTEGER NOT NULL,
    sent_ms    INTEGER
);
CREATE INDEX outbox_unsent ON outbox (sent_ms, id);
