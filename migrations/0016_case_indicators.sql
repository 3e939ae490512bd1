-- Each case's indicators on its own row, as a JSON array of [kind, value] pairs in (kind, value)
-- order, not through an index of `indicators` by ticket: the fold reads a stored case's list
-- with the case (which it reads anyway for its opening time), recall and the case view read it
-- by the case's key, and the fold no longer writes a second b-tree entry for every indicator.
-- `indicators` keeps its key (kind, value, first_ms, ticket): who else carries a value.
ALTER TABLE cases ADD COLUMN indicators TEXT NOT NULL DEFAULT '[]';
UPDATE cases SET indicators = (
    SELECT json_group_array(json_array(kind, value)) FROM (
        SELECT kind, value FROM indicators i WHERE i.ticket = cases.ticket ORDER BY kind, value
    )
);
DROP INDEX indicators_ticket;
