-- 006_rollups.sql: rollups for the kernel report (aggregator/query_kernels.c,
-- `spikehound kernels`), maintained by ingest (aggregator/ingest.c) in the
-- same transaction as the summaries and spike events they summarize, so a
-- report never scans those (a month of a 10,000-host fleet is ~2.6 billion
-- summaries).
--
-- Every column but the key is a sum, updated with INSERT .. ON CONFLICT DO
-- UPDATE SET x = x + EXCLUDED.x. Three grains:
--
--   rollup_host_day            one row per (UTC day, host, kernel release):
--                              coverage only; ~10,000 narrow rows a day
--                              for 10,000 hosts. Per-host questions (which
--                              kernel did this host run that day).
--   rollup_kernel_hour[_kind]  one row per (hour, kernel release [, kind],
--                              slot): a few dozen rows an hour for the whole
--                              fleet. The report by kernel, at hour precision.
--   rollup_labels_day[_kind]   one row per (UTC day, label set, kernel
--                              release [, kind], slot): the report by host
--                              label, at day precision. A label set is all
--                              of a host's labels (rollup_labelsets, keyed
--                              by a 64-bit hash of their jsonb text), so any
--                              label key can form the cohorts, and hosts
--                              that share rack, role and cluster share rows:
--                              a few thousand rows a day for a typical
--                              fleet instead of one per host. (A label that
--                              is unique per host, an instance id, makes it
--                              one row per host-day: correct, but slower.)
--                              Labels are the host's at ingest time.
--
-- slot is the ingest writer connection that wrote the row (set per
-- connection as spikehound.rollup_slot): rows shared by many hosts are
-- never shared by two writers, so the writers do not wait on each other's
-- row locks (held until COMMIT); a report sums over the slots.
--
-- Coverage: covered_s is the seconds the host's summaries covered (ts_end -
-- ts_start, counted in the hour/day where the summary starts), so
-- covered_s / 3600 is host-hours. The _kind tables count spike events per
-- kind (by the event's start) and merge the summaries' latency histograms
-- of that detector kind: b00..b31 are the fixed log2-microsecond buckets
-- of the wire format (b00 holds 0-1 us, bNN holds [2^NN, 2^(NN+1)) us, b31
-- everything from 2^31 us, so longer histograms fold into b31). Buckets are
-- columns, not an array: 32 plain sums are several times cheaper than
-- unnesting arrays. An empty bucket is NULL, not 0 (a bit instead of 8
-- bytes; most buckets are empty). Histogram sums are float8: exact up to
-- 2^53 and they cannot overflow, so an agent sending absurd counts cannot
-- make the rows of its kernel unwritable (bigint would fail every later
-- update of the row with "out of range").
--
-- The day tables keep their rows in day order on disk (a day's rows are
-- inserted on its first summaries; with fillfactor 50 the updates stay on
-- the row's page), so a report over the last days reads those days' pages
-- through the primary key (day first), however long the retention.
--
-- The kernel release of a row is the one of the boot its summary or event
-- belongs to (boots.kernel_release). Rollups are kept for
-- max(retention_days, 400) days (sh_ensure_partitions, redefined below).
-- Citus: rollup_host_day carries host_id (distributed by it); the others
-- are small.

CREATE TABLE rollup_host_day (
    day            date NOT NULL,               -- UTC
    host_id        uuid NOT NULL,
    kernel_release text NOT NULL,
    covered_s      double precision NOT NULL DEFAULT 0,
    summaries      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, host_id, kernel_release)
) WITH (fillfactor = 50);  -- rewritten every interval: room for HOT updates

CREATE TABLE rollup_kernel_hour (
    hour           timestamptz NOT NULL,        -- start of the UTC hour
    kernel_release text NOT NULL,
    slot           smallint NOT NULL,
    covered_s      double precision NOT NULL DEFAULT 0,
    summaries      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, kernel_release, slot)
);

CREATE TABLE rollup_kernel_hour_kind (
    hour           timestamptz NOT NULL,
    kernel_release text NOT NULL,
    kind           text NOT NULL,
    slot           smallint NOT NULL,
    events         bigint NOT NULL DEFAULT 0,
    hist_count     float8 NOT NULL DEFAULT 0,
    hist_sum_ns    float8 NOT NULL DEFAULT 0,
    b00 float8, b01 float8, b02 float8, b03 float8, b04 float8, b05 float8, b06 float8, b07 float8,
    b08 float8, b09 float8, b10 float8, b11 float8, b12 float8, b13 float8, b14 float8, b15 float8,
    b16 float8, b17 float8, b18 float8, b19 float8, b20 float8, b21 float8, b22 float8, b23 float8,
    b24 float8, b25 float8, b26 float8, b27 float8, b28 float8, b29 float8, b30 float8, b31 float8,
    PRIMARY KEY (hour, kernel_release, kind, slot)
);

CREATE TABLE rollup_labelsets (
    labels_id      bigint PRIMARY KEY,          -- hashtextextended(labels::text, 0)
    labels         jsonb NOT NULL,
    first_seen     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollup_labels_day (
    day            date NOT NULL,
    labels_id      bigint NOT NULL,
    kernel_release text NOT NULL,
    slot           smallint NOT NULL,
    covered_s      double precision NOT NULL DEFAULT 0,
    summaries      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, labels_id, kernel_release, slot)
) WITH (fillfactor = 50);

CREATE TABLE rollup_labels_day_kind (
    day            date NOT NULL,
    labels_id      bigint NOT NULL,
    kernel_release text NOT NULL,
    kind           text NOT NULL,
    slot           smallint NOT NULL,
    events         bigint NOT NULL DEFAULT 0,
    hist_count     float8 NOT NULL DEFAULT 0,
    hist_sum_ns    float8 NOT NULL DEFAULT 0,
    b00 float8, b01 float8, b02 float8, b03 float8, b04 float8, b05 float8, b06 float8, b07 float8,
    b08 float8, b09 float8, b10 float8, b11 float8, b12 float8, b13 float8, b14 float8, b15 float8,
    b16 float8, b17 float8, b18 float8, b19 float8, b20 float8, b21 float8, b22 float8, b23 float8,
    b24 float8, b25 float8, b26 float8, b27 float8, b28 float8, b29 float8, b30 float8, b31 float8,
    PRIMARY KEY (day, labels_id, kernel_release, kind, slot)
) WITH (fillfactor = 50);

-- Backfill from what is already stored (slot 0; the hosts' current
-- labels). Histograms come from summaries.histograms:
-- {"<kind>": {"buckets": [...], "count": N, "sum_ns": S}}.
CREATE TEMP TABLE sh_rollup_backfill ON COMMIT DROP AS
SELECT s.host_id, s.ts_start AS t, b.kernel_release, h.labels,
       hashtextextended(h.labels::text, 0) AS labels_id,
       least(greatest(date_part('epoch', s.ts_end - s.ts_start), 0), 86400) AS covered_s,
       s.histograms
FROM summaries s JOIN boots b USING (host_id, boot_id) JOIN hosts h USING (host_id);

-- the label sets of the hosts there are, and the empty one (a host first
-- seen without its Hello); ingest adds new ones from the Hellos
INSERT INTO rollup_labelsets (labels_id, labels)
SELECT DISTINCT ON (hashtextextended(labels::text, 0)) hashtextextended(labels::text, 0), labels
FROM (SELECT labels FROM hosts UNION ALL SELECT '{}'::jsonb) h ORDER BY 1;

INSERT INTO rollup_host_day (day, host_id, kernel_release, covered_s, summaries)
SELECT (t AT TIME ZONE 'UTC')::date, host_id, kernel_release, sum(covered_s), count(*)
FROM sh_rollup_backfill GROUP BY 1, 2, 3;

INSERT INTO rollup_kernel_hour (hour, kernel_release, slot, covered_s, summaries)
SELECT date_trunc('hour', t, 'UTC'), kernel_release, 0, sum(covered_s), count(*)
FROM sh_rollup_backfill GROUP BY 1, 2;

INSERT INTO rollup_labels_day (day, labels_id, kernel_release, slot, covered_s, summaries)
SELECT (t AT TIME ZONE 'UTC')::date, labels_id, kernel_release, 0, sum(covered_s), count(*)
FROM sh_rollup_backfill GROUP BY 1, 2, 3;

CREATE TEMP TABLE sh_rollup_backfill_kind ON COMMIT DROP AS
SELECT e.ts AS t, b.kernel_release, hashtextextended(h.labels::text, 0) AS labels_id, e.kind,
       1::bigint AS events, 0::float8 AS hist_count, 0::float8 AS hist_sum_ns, NULL::float8[] AS h
FROM spike_events e JOIN boots b USING (host_id, boot_id) JOIN hosts h USING (host_id)
UNION ALL
SELECT f.t, f.kernel_release, f.labels_id, k.key, 0,
       coalesce((k.value->>'count')::float8, 0), coalesce((k.value->>'sum_ns')::float8, 0),
       ARRAY(SELECT CASE WHEN i < 31 THEN coalesce((k.value->'buckets'->>i)::float8, 0)
                         ELSE (SELECT coalesce(sum(x::float8), 0)
                               FROM jsonb_array_elements_text(k.value->'buckets')
                                    WITH ORDINALITY AS a(x, o) WHERE o > 31) END
             FROM generate_series(0, 31) AS i ORDER BY i)
FROM sh_rollup_backfill f, jsonb_each(f.histograms) AS k
WHERE jsonb_typeof(k.value->'buckets') = 'array';

INSERT INTO rollup_kernel_hour_kind
SELECT date_trunc('hour', t, 'UTC'), kernel_release, kind, 0, sum(events), sum(hist_count),
       sum(hist_sum_ns),
       nullif(sum(h[1]), 0), nullif(sum(h[2]), 0), nullif(sum(h[3]), 0), nullif(sum(h[4]), 0),
       nullif(sum(h[5]), 0), nullif(sum(h[6]), 0), nullif(sum(h[7]), 0), nullif(sum(h[8]), 0),
       nullif(sum(h[9]), 0), nullif(sum(h[10]), 0), nullif(sum(h[11]), 0), nullif(sum(h[12]), 0),
       nullif(sum(h[13]), 0), nullif(sum(h[14]), 0), nullif(sum(h[15]), 0), nullif(sum(h[16]), 0),
       nullif(sum(h[17]), 0), nullif(sum(h[18]), 0), nullif(sum(h[19]), 0), nullif(sum(h[20]), 0),
       nullif(sum(h[21]), 0), nullif(sum(h[22]), 0), nullif(sum(h[23]), 0), nullif(sum(h[24]), 0),
       nullif(sum(h[25]), 0), nullif(sum(h[26]), 0), nullif(sum(h[27]), 0), nullif(sum(h[28]), 0),
       nullif(sum(h[29]), 0), nullif(sum(h[30]), 0), nullif(sum(h[31]), 0), nullif(sum(h[32]), 0)
FROM sh_rollup_backfill_kind GROUP BY 1, 2, 3;

INSERT INTO rollup_labels_day_kind
SELECT (t AT TIME ZONE 'UTC')::date, labels_id, kernel_release, kind, 0, sum(events),
       sum(hist_count), sum(hist_sum_ns),
       nullif(sum(h[1]), 0), nullif(sum(h[2]), 0), nullif(sum(h[3]), 0), nullif(sum(h[4]), 0),
       nullif(sum(h[5]), 0), nullif(sum(h[6]), 0), nullif(sum(h[7]), 0), nullif(sum(h[8]), 0),
       nullif(sum(h[9]), 0), nullif(sum(h[10]), 0), nullif(sum(h[11]), 0), nullif(sum(h[12]), 0),
       nullif(sum(h[13]), 0), nullif(sum(h[14]), 0), nullif(sum(h[15]), 0), nullif(sum(h[16]), 0),
       nullif(sum(h[17]), 0), nullif(sum(h[18]), 0), nullif(sum(h[19]), 0), nullif(sum(h[20]), 0),
       nullif(sum(h[21]), 0), nullif(sum(h[22]), 0), nullif(sum(h[23]), 0), nullif(sum(h[24]), 0),
       nullif(sum(h[25]), 0), nullif(sum(h[26]), 0), nullif(sum(h[27]), 0), nullif(sum(h[28]), 0),
       nullif(sum(h[29]), 0), nullif(sum(h[30]), 0), nullif(sum(h[31]), 0), nullif(sum(h[32]), 0)
FROM sh_rollup_backfill_kind GROUP BY 1, 2, 3, 4;

-- sh_ensure_partitions as in 003_summaries_inline.sql, and it also drops
-- rollup rows older than max(retention_days, 400) days: the rollups are
-- small and are what long reports read after the raw rows are gone.
CREATE OR REPLACE FUNCTION sh_ensure_partitions(days_back integer, days_ahead integer, retention_days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    parent text;
    d date;
    part text;
    created integer := 0;
    r record;
    keep date := current_date - greatest(retention_days, 400);
BEGIN
    FOREACH parent IN ARRAY ARRAY['summaries', 'spike_events'] LOOP
        FOR d IN SELECT generate_series(current_date - days_back, current_date + days_ahead, '1 day')::date LOOP
            part := format('%s_%s', parent, to_char(d, 'YYYYMMDD'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)%s',
                               part, parent, d::timestamptz, (d + 1)::timestamptz,
                               CASE WHEN parent = 'summaries'
                                    THEN ' WITH (toast_tuple_target = 8160)' ELSE '' END);
                created := created + 1;
            END IF;
        END LOOP;
        FOR r IN SELECT c.relname FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
                 WHERE p.relname = parent AND c.relname ~ ('^' || parent || '_[0-9]{8}$') LOOP
            IF to_date(right(r.relname, 8), 'YYYYMMDD') < current_date - retention_days THEN
                EXECUTE format('DROP TABLE %I', r.relname);
            END IF;
        END LOOP;
    END LOOP;
    DELETE FROM rollup_host_day WHERE day < keep;
    DELETE FROM rollup_kernel_hour WHERE hour < keep;
    DELETE FROM rollup_kernel_hour_kind WHERE hour < keep;
    DELETE FROM rollup_labels_day WHERE day < keep;
    DELETE FROM rollup_labels_day_kind WHERE day < keep;
    RETURN created;
END $$;
