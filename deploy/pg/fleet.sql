-- Tables a fleet of emperors shares in the database of its pg:// source.
-- Idempotent: run it again at any time.
--
--   psql -d emperor -f deploy/pg/fleet.sql

-- ---------------------------------------------------------------------------
-- Singleton leases (pg://…;leases=TABLE, default emperor_leases).
-- One row per singleton vassal: the emperor that runs it, a fencing token
-- that grows with every change of holder (the vassal sees it in
-- EMPEROR_FENCE) and an expiry on the server's clock. Each emperor creates
-- the table itself if it is missing; this is the same DDL, for a database
-- where the emperors may not create tables.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS emperor_leases (
    name        text        PRIMARY KEY,                 -- the singleton's vassal name
    holder      text,                                    -- '<--host>/<emperor id prefix>' of its holder; NULL: free
    token       bigint      NOT NULL DEFAULT 0,          -- fencing token: +1 whenever the holder changes
    expires_at  timestamptz NOT NULL DEFAULT '-infinity', -- by the server's now(); renewed every few seconds
    acquired_at timestamptz                              -- when the current holder took it
);
-- Who runs which singleton, and for how much longer:
--   SELECT name, holder, token, expires_at - now() AS left FROM emperor_leases;
-- End of the singleton leases block.
