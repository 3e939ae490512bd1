-- The analyst's console: an action's blast radius counts the other cases on its target host.
CREATE INDEX IF NOT EXISTS cases_by_host ON cases (host);

-- Whether a role handed the case to a human (needs_human_review), folded with the case: the
-- review queue reads it off an index instead of scanning every event. Cases folded by older
-- releases are marked once here, from their recorded events.
ALTER TABLE cases ADD COLUMN needs_review INTEGER NOT NULL DEFAULT 0;
UPDATE cases SET needs_review = 1 WHERE ticket IN (
    SELECT ticket FROM case_events
    WHERE kind IN ('AlertTriaged', 'Tier2Analysis', 'IRPlan', 'ThreatIntelReport')
    AND instr(body, '"needs_human_review"') > 0);
CREATE INDEX cases_needing_review ON cases (needs_review, first_ms) WHERE needs_review = 1;
CREATE INDEX cases_escalated ON cases (escalated, first_ms) WHERE escalated = 1;

-- Dispositions given from the console: once per case and analyst (the
-- dispositions table keeps the latest per ticket; this keeps each one given, for the audit).
CREATE TABLE console_dispositions (
    ticket         TEXT    NOT NULL,
    classification TEXT    NOT NULL,   -- confirmed_malicious | benign_true_positive | false_positive
    reason         TEXT    NOT NULL,
    person         TEXT    NOT NULL,
    at_ms          INTEGER NOT NULL,
    PRIMARY KEY (ticket, person)
) WITHOUT ROWID;
