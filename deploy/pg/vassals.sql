-- The table of the pg:// source, with a trigger that tells listening
-- emperors about every change (pg://…;listen=emperor_vassals).
-- Idempotent: run it again to upgrade an existing table's trigger.
--
--   psql -d emperor -f deploy/pg/vassals.sql
--   emperor 'pg://host=db user=emperor dbname=emperor;SELECT name, config, ts, uid, gid, socket FROM vassals WHERE host = '\''web-1'\'';listen=emperor_vassals'

CREATE TABLE IF NOT EXISTS vassals (
    name   text        NOT NULL,                -- vassal name with its config extension: app.ini
    config text        NOT NULL,                -- the config itself (its format follows the extension)
    ts     timestamptz NOT NULL DEFAULT now(),  -- any change (to the microsecond) reloads the vassal
    uid    integer,                             -- optional: run as this uid/gid (both or neither)
    gid    integer,
    socket text,                                -- optional: on-demand socket
    host   text        NOT NULL DEFAULT '',     -- which emperor runs it (each one filters on its own host)
    PRIMARY KEY (host, name)
);

-- Bump ts whenever a row's content changes without a new ts, so that an
-- UPDATE of the config alone is a visible change for every tool, not only
-- for emperor (which also hashes the config).
CREATE OR REPLACE FUNCTION emperor_vassals_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ts IS NOT DISTINCT FROM OLD.ts AND (NEW.config, NEW.uid, NEW.gid, NEW.socket)
        IS DISTINCT FROM (OLD.config, OLD.uid, OLD.gid, OLD.socket) THEN
        NEW.ts := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;

-- One notification per changed row, its payload the row's name (OLD/NEW on
-- a rename; `/` is never part of a vassal name): the emperor re-reads only
-- those rows, through the index below. TRUNCATE, or a payload too long for
-- NOTIFY, asks for the whole query, as does any other payload on the
-- channel (a plain `NOTIFY emperor_vassals`, an older trigger's TG_OP).
-- A statement touching many rows sends many notifications: the emperor
-- coalesces them, and past a few dozen names runs the whole query once.
CREATE OR REPLACE FUNCTION emperor_vassals_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        payload := TG_OP;
    ELSIF TG_OP = 'INSERT' THEN
        payload := NEW.name;
    ELSIF TG_OP = 'DELETE' THEN
        payload := OLD.name;
    ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
        payload := OLD.name || '/' || NEW.name;
    ELSE
        payload := NEW.name;
    END IF;
    IF payload IS NULL OR octet_length(payload) >= 8000 THEN
        payload := '*';
    END IF;
    PERFORM pg_notify('emperor_vassals', payload);
    RETURN NULL;
END
$$;

-- The re-read of a notified row looks it up by name (the primary key leads
-- with host, so it cannot serve a query that does not filter on host).
CREATE INDEX IF NOT EXISTS vassals_name ON vassals (name);

DROP TRIGGER IF EXISTS vassals_touch ON vassals;
CREATE TRIGGER vassals_touch BEFORE UPDATE ON vassals
    FOR EACH ROW EXECUTE FUNCTION emperor_vassals_touch();

DROP TRIGGER IF EXISTS vassals_notify ON vassals;
CREATE TRIGGER vassals_notify AFTER INSERT OR UPDATE OR DELETE ON vassals
    FOR EACH ROW EXECUTE FUNCTION emperor_vassals_notify();

DROP TRIGGER IF EXISTS vassals_truncate ON vassals;
CREATE TRIGGER vassals_truncate AFTER TRUNCATE ON vassals
    FOR EACH STATEMENT EXECUTE FUNCTION emperor_vassals_notify();
