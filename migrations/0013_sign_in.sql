-- Failed sign-ins, for the audit (who was tried, from where, and why it failed).
CREATE TABLE sign_in_failures (
    at_ms   INTEGER NOT NULL,
    name    TEXT    NOT NULL,   -- as typed, at most 256 characters
    address TEXT    NOT NULL,   -- the client's address, or '' when unknown
    reason  TEXT    NOT NULL    -- wrong_password (refusals while locked are only counted)
);
CREATE INDEX sign_in_failures_by_time ON sign_in_failures (at_ms);

-- Sessions ended by a sign-out before their expiry: their cookies are refused from then on.
CREATE TABLE revoked_sessions (
    tag        TEXT    PRIMARY KEY,  -- the cookie's signature
    expires_ms INTEGER NOT NULL      -- when the cookie would have expired (then forgotten)
);
