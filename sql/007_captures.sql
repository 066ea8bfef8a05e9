-- 007_captures.sql: captures, the full flight-recorder content of a time
-- window pulled from agents (aggregator/capture.c, control.c).
--
-- A capture is asked of one or more hosts (capture_hosts, one row per host
-- with its own status: requested -> sent -> accepted -> receiving ->
-- complete, or expired / failed with a reason). An agent sends the
-- zstd-compressed serialized Capture as numbered chunks on the data plane;
-- each chunk is its own acknowledged message, kept in capture_chunks until
-- the last one arrives, then the payload is assembled, its SHA-256 checked
-- and stored in capture_hosts.payload (chunks deleted). Captures an agent
-- takes by itself (trigger "local:<kind>") create their rows with their
-- first chunk.

CREATE TABLE captures (
    capture_id   uuid PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    trigger      text NOT NULL,                -- manual | incident:<id> | spike:<kind> | local:<kind>
    incident_id  bigint,
    from_ts      timestamptz NOT NULL,         -- the window asked for
    to_ts        timestamptz NOT NULL,
    max_bytes    bigint NOT NULL DEFAULT 0,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX captures_requested ON captures (requested_at);

CREATE TABLE capture_hosts (
    capture_id       uuid NOT NULL,
    host_id          uuid NOT NULL,
    role             text NOT NULL DEFAULT 'requested',  -- spiking | healthy | requested | local
    status           text NOT NULL DEFAULT 'requested',
    reason           text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    total_chunks     integer,
    compressed_bytes bigint,
    raw_bytes        bigint,
    sha256           text,
    held_from        timestamptz,                 -- the window the agent actually had
    held_to          timestamptz,
    payload          bytea,
    PRIMARY KEY (capture_id, host_id)
);
ALTER TABLE capture_hosts ALTER COLUMN payload SET STORAGE EXTERNAL;  -- already compressed
CREATE INDEX capture_hosts_open ON capture_hosts (status) WHERE status IN ('requested', 'sent', 'accepted', 'receiving');
CREATE INDEX capture_hosts_host ON capture_hosts (host_id, updated_at);

CREATE TABLE capture_chunks (
    capture_id uuid NOT NULL,
    host_id    uuid NOT NULL,
    idx        integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (capture_id, host_id, idx)
);
ALTER TABLE capture_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
