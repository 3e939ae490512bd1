-- The facts of a disposition's ticket that the rules reasoner keeps priors by (per rule, host,
-- detector), and from when the disposition is known (NULL: always). Rows imported before this
-- migration have none of them and count only in the overall base rate.
ALTER TABLE dispositions ADD COLUMN site     TEXT;
ALTER TABLE dispositions ADD COLUMN rule     TEXT;
ALTER TABLE dispositions ADD COLUMN host     TEXT;
ALTER TABLE dispositions ADD COLUMN detector TEXT;
ALTER TABLE dispositions ADD COLUMN known_ms INTEGER;
