-- The status tables of pg://…;status=emperor_status: what runs where.
-- The emperor creates them itself when missing; run this file instead where
-- it has no right to create tables (it then needs SELECT, INSERT, UPDATE and
-- DELETE on both). The tables carry no trigger: writing status never wakes a
-- listening emperor. For another name, replace emperor_status throughout.
--
--   psql -d emperor -f deploy/pg/fleet.sql

-- One row per vassal per host, written when it changes.
CREATE TABLE IF NOT EXISTS emperor_status (
    host       text        NOT NULL,               -- the emperor's --host
    name       text        NOT NULL,               -- the vassal
    state      text        NOT NULL,               -- running, waiting, starting, stopping, crashed, held, stopped
    pid        integer,                            -- its process on that host
    since      timestamptz,                        -- when it entered its state (server clock)
    restarts   integer     NOT NULL DEFAULT 0,     -- starts again since the emperor started
    last_exit  text,                               -- code 1, signal SIGKILL, unknown
    updated_at timestamptz NOT NULL DEFAULT now(), -- the last write of this row
    PRIMARY KEY (host, name)
) WITH (fillfactor = 80);

-- One heartbeat row per emperor, renewed every 10 s (status-heartbeat=SECS).
CREATE TABLE IF NOT EXISTS emperor_status_hosts (
    host         text        PRIMARY KEY,
    emperor_id   text        NOT NULL,               -- random per state dir: a restart is the same emperor
    pid          integer,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(), -- older than 3 periods: the emperor is dead
    vassals      jsonb       NOT NULL DEFAULT '{}',  -- counts per state
    stopped_at   timestamptz                         -- set by a clean stop (SIGTERM), NULL while it runs
);
-- Tables made by an earlier version get the column (the emperor adds it too when it may).
ALTER TABLE emperor_status_hosts ADD COLUMN IF NOT EXISTS stopped_at timestamptz;
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
