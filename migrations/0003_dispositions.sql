-- What analysts decided, per ticket: imported history or feedback. Not a projection of the
-- audit, so a rebuild keeps it; verdicts and cases read it by ticket.
CREATE TABLE dispositions (
    ticket       TEXT    PRIMARY KEY,
    ground_truth TEXT    NOT NULL,   -- escalate | close
    source       TEXT    NOT NULL,   -- where it came from (a file, a feedback channel)
    at_ms        INTEGER NOT NULL
) WITHOUT ROWID;
