-- Cases by opening time: campaign windows, the newest case, and a cheap COUNT(*) (SQLite
-- counts through the smallest index, and this one is much smaller than the table).
CREATE INDEX cases_opened ON cases (first_ms);
