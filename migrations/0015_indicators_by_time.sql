-- Indicators keyed by (kind, value, first_ms, ticket): recall and the campaign sweep read a
-- value's cases by opening time off the key itself, so the separate `indicators_recent` index,
-- a third b-tree written for every indicator the fold stores, goes. A case's first_ms never
-- changes once stored (the fold writes its indicators with the stored time), so the key is
-- unique exactly when (kind, value, ticket) is.
CREATE TABLE indicators_by_time (
    kind     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    ticket   TEXT    NOT NULL,
    first_ms INTEGER NOT NULL,   -- the case's
    PRIMARY KEY (kind, value, first_ms, ticket)
) WITHOUT ROWID;
INSERT INTO indicators_by_time (kind, value, ticket, first_ms)
    SELECT kind, value, ticket, first_ms FROM indicators;
DROP TABLE indicators;
ALTER TABLE indicators_by_time RENAME TO indicators;
CREATE INDEX indicators_ticket ON indicators (ticket);
