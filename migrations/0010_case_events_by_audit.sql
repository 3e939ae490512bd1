-- The dashboard lists the cases updated last: case events in audit order, newest first.
CREATE INDEX case_events_by_audit ON case_events (audit_ms, audit_seq);
