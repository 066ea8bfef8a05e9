-- 005_incidents.sql: fleet incidents found by the correlator
-- (aggregator/correlate.c) and their ranked suspects.
--
-- An incident groups spike events of one kind from many hosts: a burst
-- (close in time after clock-skew correction), a periodic train (one
-- period, any phase, on one or more hosts) or a recurring excess (hosts far
-- above the fleet's rate for that kind). spike_events.incident_id points to
-- it (NULL: in no incident). incidents and incident_suspects are small
-- (Citus reference tables); incident_hosts carries host_id. No foreign
-- keys: incidents are dissolved and merged as late events arrive.
--
-- correlate_queue is the correlator's inbox: a statement trigger on
-- spike_events enqueues every inserted event (key, time and kind), so a
-- correlation cycle reads only what is new and never scans spike_events.
-- The cycle deletes the rows it handled in the transaction that stores its
-- results. (Under Citus, where such triggers are not available, ingest
-- would insert the queue rows itself in its transaction.)

CREATE TABLE incidents (
    incident_id     bigserial PRIMARY KEY,
    kind            text NOT NULL,
    type            text NOT NULL CHECK (type IN ('burst', 'periodic', 'recurring')),
    first_ts        timestamptz NOT NULL,          -- earliest event (host clock)
    last_ts         timestamptz NOT NULL,          -- latest event
    hosts           integer NOT NULL DEFAULT 0,
    events          bigint NOT NULL DEFAULT 0,
    period_s        double precision,              -- periodic: mean of the hosts' periods
    period_jitter_s double precision,              -- periodic: RMS spread around it
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),  -- membership last changed
    suspects_at     timestamptz                    -- suspects last ranked
);
CREATE INDEX incidents_last ON incidents (last_ts);
CREATE INDEX incidents_kind ON incidents (kind, type, last_ts);

-- One row per (incident, host): how many of the host's events are in it.
CREATE TABLE incident_hosts (
    incident_id     bigint NOT NULL,
    host_id         uuid NOT NULL,
    events          integer NOT NULL,
    first_ts        timestamptz NOT NULL,
    last_ts         timestamptz NOT NULL,
    period_s        double precision,              -- periodic: this host's fitted period
    period_jitter_s double precision,              -- its largest deviation from the fit
    PRIMARY KEY (incident_id, host_id)
);
CREATE INDEX incident_hosts_host ON incident_hosts (host_id);

-- The top suspects of an incident, best first (rank 1). basis "hosts":
-- spiking_* count the incident's hosts, others_* hosts active in the same
-- window without spikes; basis "windows" (started:): spiking_* count spike
-- windows, others_* ordinary windows of the same hosts. p_value is the
-- one-sided Fisher test (log10_p keeps its magnitude below DBL_MIN);
-- evidence_events of evidence_total events name the feature's process as a
-- culprit (mostly in evidence_role). score = -log10 p + 3 * evidence share.
CREATE TABLE incident_suspects (
    incident_id     bigint NOT NULL,
    rank            integer NOT NULL,
    feature         text NOT NULL,
    basis           text NOT NULL DEFAULT 'hosts',
    spiking_with    integer NOT NULL,
    spiking_total   integer NOT NULL,
    others_with     integer NOT NULL,
    others_total    integer NOT NULL,
    p_value         double precision NOT NULL,
    log10_p         double precision NOT NULL,
    score           double precision NOT NULL,
    evidence_events integer NOT NULL DEFAULT 0,
    evidence_total  integer NOT NULL DEFAULT 0,
    evidence_role   text NOT NULL DEFAULT '',
    example         text NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, rank)
);

-- Nullable without a default: ingest stages rows in a copy of this table.
ALTER TABLE spike_events ADD COLUMN incident_id bigint;
CREATE INDEX spike_events_incident ON spike_events (incident_id, host_id, ts)
    WHERE incident_id IS NOT NULL;
CREATE INDEX spike_events_kind_ts ON spike_events (kind, ts);

CREATE TABLE correlate_queue (
    qid       bigserial PRIMARY KEY,
    host_id   uuid NOT NULL,
    boot_id   uuid NOT NULL,
    seq       bigint NOT NULL,
    ts        timestamptz NOT NULL,
    kind      text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION sh_correlate_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO correlate_queue (host_id, boot_id, seq, ts, kind)
        SELECT host_id, boot_id, seq, ts, kind FROM sh_new_events;
    RETURN NULL;
END $$;

CREATE TRIGGER spike_events_correlate AFTER INSERT ON spike_events
    REFERENCING NEW TABLE AS sh_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION sh_correlate_enqueue();

-- sh_cmdline_norm is the key of a cmdline: feature: every maximal run of
-- decimal digits replaced by '#', whitespace runs collapsed to one space
-- (and trimmed), cut at 120 bytes (never inside a character).
CREATE FUNCTION sh_cmdline_norm(c text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n text := btrim(regexp_replace(regexp_replace(c, '[0-9]+', '#', 'g'), '\s+', ' ', 'g'));
BEGIN
    IF octet_length(n) <= 120 THEN
        RETURN n;
    END IF;
    n := left(n, 120);
    WHILE octet_length(n) > 120 LOOP
        n := left(n, -1);
    END LOOP;
    RETURN n;
END $$;
