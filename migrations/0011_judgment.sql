-- What the judgment needs of a disposition's case when it is history: its title, times, size
-- and the vendor fields it carried. Rows written by older releases have none of them; they
-- still count in the priors the tools read, but are not fitted on.
ALTER TABLE dispositions ADD COLUMN title       TEXT;
ALTER TABLE dispositions ADD COLUMN first_ms    INTEGER;
ALTER TABLE dispositions ADD COLUMN last_ms     INTEGER;
ALTER TABLE dispositions ADD COLUMN alert_count INTEGER;
ALTER TABLE dispositions ADD COLUMN vendor      TEXT;   -- JSON, when the alert carried any

-- The calibrated probability of escalation a triage decision rested on.
ALTER TABLE verdicts ADD COLUMN p_escalate REAL;
