-- 001_init.sql: the foundation schema: hosts, boots, summaries with their
-- per-second metric series, processes and spike events.
--
-- Citus-ready: every large table carries host_id (the distribution column)
-- and there are no foreign keys across hosts. Tables that grow with time are
-- range-partitioned by day; sh_ensure_partitions() creates them ahead and
-- drops those past retention. Delivery is idempotent through boots.last_seq:
-- an agent sends its messages in sequence order, so a message whose seq is
-- at or below the committed high-water mark of its boot is a duplicate.

CREATE TABLE hosts (
    host_id        uuid PRIMARY KEY,
    hostname       text NOT NULL,
    labels         jsonb NOT NULL DEFAULT '{}',
    cpu_count      integer NOT NULL DEFAULT 0,
    cpu_model      text NOT NULL DEFAULT '',
    memory_bytes   bigint NOT NULL DEFAULT 0,
    agent_version  text NOT NULL DEFAULT '',
    last_boot_id   uuid,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    spool_dropped  bigint NOT NULL DEFAULT 0,   -- summaries the agent's spool dropped, total reported
    clock_skew_ms  double precision             -- agent clock minus aggregator clock, estimated
);

CREATE TABLE boots (
    host_id        uuid NOT NULL,
    boot_id        uuid NOT NULL,
    kernel_release text NOT NULL,
    kernel_version text NOT NULL DEFAULT '',
    boot_time      timestamptz,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    last_seq       bigint NOT NULL DEFAULT 0,   -- highest committed message seq of this boot
    PRIMARY KEY (host_id, boot_id)
);
CREATE INDEX boots_kernel ON boots (kernel_release);

-- One row per host-interval; the per-second series are parallel arrays
-- (element i of every m_* array is second i, at m_time[i]).
CREATE TABLE summaries (
    host_id        uuid NOT NULL,
    boot_id        uuid NOT NULL,
    seq            bigint NOT NULL,
    ts_start       timestamptz NOT NULL,
    ts_end         timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    dropped_before bigint NOT NULL DEFAULT 0,
    health         jsonb NOT NULL DEFAULT '{}',
    m_time               timestamptz[] NOT NULL,
    m_cpu_user_pct       real[],
    m_cpu_sys_pct        real[],
    m_cpu_irq_pct        real[],
    m_cpu_softirq_pct    real[],
    m_cpu_iowait_pct     real[],
    m_cpu_steal_pct      real[],
    m_cpu_idle_pct       real[],
    m_load1              real[],
    m_procs_running      integer[],
    m_procs_blocked      integer[],
    m_psi_cpu_some_avg10 real[],
    m_psi_mem_some_avg10 real[],
    m_psi_mem_full_avg10 real[],
    m_psi_io_some_avg10  real[],
    m_psi_io_full_avg10  real[],
    m_psi_cpu_some_us    bigint[],
    m_psi_mem_some_us    bigint[],
    m_psi_io_some_us     bigint[],
    m_mem_total_kb       bigint[],
    m_mem_free_kb        bigint[],
    m_mem_available_kb   bigint[],
    m_mem_cached_kb      bigint[],
    m_slab_reclaimable_kb   bigint[],
    m_slab_unreclaimable_kb bigint[],
    m_pgscan_direct      bigint[],
    m_pgscan_kswapd      bigint[],
    m_pgsteal_direct     bigint[],
    m_pgsteal_kswapd     bigint[],
    m_allocstall         bigint[],
    m_compact_stall      bigint[],
    m_dentry_nr          bigint[],
    m_dentry_unused      bigint[],
    m_dentry_negative    bigint[],
    m_ctxt               bigint[],
    m_forks              bigint[],
    m_intr               bigint[],
    m_softirq_net_rx     bigint[]
) PARTITION BY RANGE (ts_start);
CREATE INDEX summaries_host_ts ON summaries (host_id, ts_start);

-- Processes seen on a host, one row per (boot, pid, start time).
CREATE TABLE processes (
    host_id     uuid NOT NULL,
    boot_id     uuid NOT NULL,
    pid         integer NOT NULL,
    start_time  timestamptz NOT NULL,
    ppid        integer NOT NULL DEFAULT 0,
    uid         integer NOT NULL DEFAULT 0,
    comm        text NOT NULL DEFAULT '',
    exe         text NOT NULL DEFAULT '',
    cmdline     text NOT NULL DEFAULT '',
    cgroup      text NOT NULL DEFAULT '',
    exit_time   timestamptz,
    exit_inferred boolean NOT NULL DEFAULT false,  -- missing from a later snapshot, exit not seen
    PRIMARY KEY (host_id, boot_id, pid, start_time)
);
CREATE INDEX processes_alive ON processes (host_id, start_time, exit_time);
CREATE INDEX processes_cmdline ON processes USING btree (comm);

CREATE TABLE spike_events (
    host_id      uuid NOT NULL,
    boot_id      uuid NOT NULL,
    seq          bigint NOT NULL,
    ts           timestamptz NOT NULL,           -- spike start
    duration_ns  bigint NOT NULL,
    kind         text NOT NULL,
    cpu          integer NOT NULL DEFAULT -1,
    victim_pid   integer NOT NULL DEFAULT 0,
    victim_tid   integer NOT NULL DEFAULT 0,
    victim_comm  text NOT NULL DEFAULT '',
    victim_cgroup text NOT NULL DEFAULT '',
    detail       text NOT NULL DEFAULT '',
    evidence     jsonb NOT NULL DEFAULT '{}',   -- victim stacks, culprits, attrs, window samples
    received_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (ts);
CREATE INDEX spike_events_ts ON spike_events (ts);
CREATE INDEX spike_events_host_ts ON spike_events (host_id, ts);

CREATE TABLE summaries_default PARTITION OF summaries DEFAULT;
CREATE TABLE spike_events_default PARTITION OF spike_events DEFAULT;

-- sh_ensure_partitions creates the daily partitions of every partitioned
-- table from days_back days ago to days_ahead days ahead, and drops daily
-- partitions that ended more than retention_days ago. Returns how many
-- partitions it created.
CREATE FUNCTION sh_ensure_partitions(days_back integer, days_ahead integer, retention_days integer)
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
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, parent, d::timestamptz, (d + 1)::timestamptz);
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
