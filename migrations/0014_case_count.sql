-- How many cases memory holds, kept by the fold (a COUNT(*) over `cases` reads the whole
-- table, on every recall). A rebuild's reset sets it back to 0 with the tables it empties.
CREATE TABLE case_count (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    n  INTEGER NOT NULL
);
INSERT INTO case_count (id, n) SELECT 0, COUNT(*) FROM cases;
