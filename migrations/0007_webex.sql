-- Webex: the card queue and analysts' feedback. Neither is a projection: a rebuild keeps them,
-- so a refold never sends a card twice and never forgets feedback.
--
-- cards: one per IR plan, queued when the projector folds the plan, sent by the notifier
-- (retried with backoff; given up after its attempts, or once the plan's proposals expired).
CREATE TABLE cards (
    plan_id         TEXT    PRIMARY KEY,
    ticket          TEXT    NOT NULL,
    plan            TEXT    NOT NULL,              -- the IrPlan event, JSON
    created_ms      INTEGER NOT NULL,              -- when the plan was published
    status          TEXT    NOT NULL DEFAULT 'queued',  -- queued | sent | failed | expired
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    message_id      TEXT,                          -- Webex's id of the sent message
    sent_ms         INTEGER
) WITHOUT ROWID;
CREATE INDEX cards_due ON cards (status, next_attempt_ms);
CREATE INDEX cards_by_message ON cards (message_id);

-- feedback: one row per Webex attachment action (a button press on a card), so a replayed
-- webhook records nothing twice. The disposition itself goes to `dispositions`.
CREATE TABLE feedback (
    action_id   TEXT    PRIMARY KEY,
    ticket      TEXT    NOT NULL,
    disposition TEXT    NOT NULL,                  -- escalate | close
    person      TEXT    NOT NULL,                  -- the analyst's e-mail
    at_ms       INTEGER NOT NULL
) WITHOUT ROWID;
