-- query_fixture.sql: a small hand-filled database for the query API tests
-- (aggregator/query.c, the spikehound CLI). Apply after sql/ migrations.
--
-- Two hosts around 2025-11-22T10:21:00Z (Unix 1763806860):
--   web-01 (1111...) rebooted from 6.1.0-13 into 6.1.0-18 (its last boot);
--          one summary of 10 s (10:21:00..10:21:10) with every m_* array;
--          processes: sshd (long-lived), atop -R -w ... 600 (started
--          10:21:05), cron job (exited 10:21:03), an old process that
--          exited before the window, and one whose comm and cmdline carry
--          terminal escape sequences (must be neutralized when printed);
--          a spike at 10:21:07.250 (mmap_lock_wait, 48 ms, culprit atop).
--   web-02 (2222...) on 6.1.0-18, labels {"rack": "r2"}, 3 spool drops;
--          a spike at 10:21:08 (runq, 12 ms), no summaries.
-- A third host shares web-02's hostname prefix only through its host_id
-- (22220000-...): "--host 2222" is ambiguous (409), "--host 22221" is not.
--
-- Handy values: at = 1763806867250000000 (10:21:07.250Z), window 5 s
-- = 5000000000.

BEGIN;

INSERT INTO hosts (host_id, hostname, labels, cpu_count, cpu_model, memory_bytes,
                   agent_version, last_boot_id, first_seen, last_seen, spool_dropped, clock_skew_ms)
VALUES
  ('11111111-1111-4111-8111-111111111111', 'web-01', '{"rack": "r1", "role": "web"}', 8,
   'Intel(R) Xeon(R) CPU', 17179869184, '0.1.0', 'bbbbbbbb-0000-4000-8000-000000000002',
   '2025-11-20T00:00:00Z', '2025-11-22T10:21:10Z', 0, 1.5),
  ('22221111-2222-4222-8222-222222222222', 'web-02', '{"rack": "r2"}', 4,
   'AMD EPYC', 8589934592, '0.1.0', 'cccccccc-0000-4000-8000-000000000001',
   '2025-11-21T00:00:00Z', '2025-11-22T10:21:09Z', 3, NULL),
  ('22220000-3333-4333-8333-333333333333', 'db-01', '{}', 2,
   '', 4294967296, '0.1.0', NULL,
   '2025-11-21T00:00:00Z', '2025-11-21T12:00:00Z', 0, NULL);

INSERT INTO boots (host_id, boot_id, kernel_release, kernel_version, boot_time,
                   first_seen, last_seen, last_seq)
VALUES
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000001',
   '6.1.0-13-amd64', '#1 SMP Debian 6.1.55-1', '2025-11-01T00:00:00Z',
   '2025-11-20T00:00:00Z', '2025-11-21T23:00:00Z', 120),
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002',
   '6.1.0-18-amd64', '#1 SMP Debian 6.1.76-1', '2025-11-21T23:30:00Z',
   '2025-11-21T23:31:00Z', '2025-11-22T10:21:10Z', 42),
  ('22221111-2222-4222-8222-222222222222', 'cccccccc-0000-4000-8000-000000000001',
   '6.1.0-18-amd64', '#1 SMP Debian 6.1.76-1', '2025-11-20T00:00:00Z',
   '2025-11-21T00:00:00Z', '2025-11-22T10:21:09Z', 7);

-- Ten seconds of web-01 metrics; second 7 has the reclaim storm.
INSERT INTO summaries (host_id, boot_id, seq, ts_start, ts_end, m_time,
    m_cpu_user_pct, m_cpu_sys_pct, m_cpu_irq_pct, m_cpu_softirq_pct, m_cpu_iowait_pct,
    m_cpu_steal_pct, m_cpu_idle_pct, m_load1, m_procs_running, m_procs_blocked,
    m_psi_cpu_some_avg10, m_psi_mem_some_avg10, m_psi_mem_full_avg10,
    m_psi_io_some_avg10, m_psi_io_full_avg10,
    m_psi_cpu_some_us, m_psi_mem_some_us, m_psi_io_some_us,
    m_mem_total_kb, m_mem_free_kb, m_mem_available_kb, m_mem_cached_kb,
    m_slab_reclaimable_kb, m_slab_unreclaimable_kb,
    m_pgscan_direct, m_pgscan_kswapd, m_pgsteal_direct, m_pgsteal_kswapd,
    m_allocstall, m_compact_stall,
    m_dentry_nr, m_dentry_unused, m_dentry_negative,
    m_ctxt, m_forks, m_intr, m_softirq_net_rx)
SELECT '11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 41,
    '2025-11-22T10:21:00Z', '2025-11-22T10:21:10Z',
    array_agg(timestamptz '2025-11-22T10:21:00Z' + i * interval '1 second' ORDER BY i),
    array_agg((10 + i)::real ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 45 ELSE 5 END)::real ORDER BY i),
    array_agg(0.5::real ORDER BY i),
    array_agg(1.25::real ORDER BY i),
    array_agg(0::real ORDER BY i),
    array_agg(0::real ORDER BY i),
    array_agg((100 - 10 - i - CASE WHEN i = 7 THEN 45 ELSE 5 END - 1.75)::real ORDER BY i),
    array_agg((2 + i * 0.1)::real ORDER BY i),
    array_agg(3 ORDER BY i),
    array_agg(0 ORDER BY i),
    array_agg(1.5::real ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 30 ELSE 0 END)::real ORDER BY i),
    array_agg(0::real ORDER BY i),
    array_agg(0.2::real ORDER BY i),
    array_agg(0::real ORDER BY i),
    array_agg(1000::bigint ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 300000 ELSE 0 END)::bigint ORDER BY i),
    array_agg(10::bigint ORDER BY i),
    array_agg(16777216::bigint ORDER BY i),
    array_agg(204800::bigint ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 102400 ELSE 8388608 END)::bigint ORDER BY i),
    array_agg(4194304::bigint ORDER BY i),
    array_agg(1048576::bigint ORDER BY i),
    array_agg(262144::bigint ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 524288 ELSE 0 END)::bigint ORDER BY i),
    array_agg((CASE WHEN i >= 6 THEN 65536 ELSE 0 END)::bigint ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 300000 ELSE 0 END)::bigint ORDER BY i),
    array_agg((CASE WHEN i >= 6 THEN 60000 ELSE 0 END)::bigint ORDER BY i),
    array_agg((CASE WHEN i = 7 THEN 12 ELSE 0 END)::bigint ORDER BY i),
    array_agg(0::bigint ORDER BY i),
    array_agg(9000000::bigint ORDER BY i),
    array_agg(8500000::bigint ORDER BY i),
    array_agg((8000000 + i * 1000)::bigint ORDER BY i),
    array_agg(50000::bigint ORDER BY i),
    array_agg(20::bigint ORDER BY i),
    array_agg(30000::bigint ORDER BY i),
    array_agg(4000::bigint ORDER BY i)
FROM generate_series(0, 9) AS i;

INSERT INTO processes (host_id, boot_id, pid, start_time, ppid, uid, comm, exe, cmdline,
                       cgroup, exit_time, exit_inferred)
VALUES
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 812,
   '2025-11-21T23:30:05Z', 1, 0, 'sshd', '/usr/sbin/sshd', 'sshd: /usr/sbin/sshd -D',
   '/system.slice/ssh.service', NULL, false),
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 4242,
   '2025-11-22T10:21:05Z', 1, 0, 'atop', '/usr/bin/atop', 'atop -R -w /var/log/atop/x 600',
   '/system.slice/atop.service', NULL, false),
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 4100,
   '2025-11-22T10:20:59.500Z', 900, 0, 'cron-job', '/usr/local/bin/cron-job', '/usr/local/bin/cron-job --hourly',
   '/system.slice/cron.service', '2025-11-22T10:21:03Z', false),
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 3000,
   '2025-11-22T09:00:00Z', 1, 1000, 'old', '/usr/bin/old', 'old --gone',
   '/user.slice', '2025-11-22T09:30:00Z', true),
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 6666,
   '2025-11-22T10:21:06Z', 1, 1000, E'ev\x1b[2Jil', '/tmp/evil',
   E'evil \x1b]0;pwned\x07 --arg \x1b[31mred\x1b[0m\ttab\r\nnewline \u202e', '/user.slice', NULL, false);

INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, cpu, victim_pid,
                          victim_tid, victim_comm, victim_cgroup, detail, evidence)
VALUES
  ('11111111-1111-4111-8111-111111111111', 'bbbbbbbb-0000-4000-8000-000000000002', 40,
   '2025-11-22T10:21:07.250Z', 48000000, 'mmap_lock_wait', 3, 5120, 5121, 'java',
   '/system.slice/app.service', 'mmap',
   '{"culprits": [{"pid": 4242, "tid": 4242, "comm": "atop", "role": "holder",
                   "kernel_stack": ["down_read", "walk_page_range", "smaps_pte_range"],
                   "on_cpu_ns": 41000000}],
     "victim": {"kernel_stack": ["rwsem_down_write_slowpath", "do_mmap"]},
     "attrs": {"lock": "mmap_lock"}}'),
  ('22221111-2222-4222-8222-222222222222', 'cccccccc-0000-4000-8000-000000000001', 6,
   '2025-11-22T10:21:08Z', 12000000, 'runq', 1, 777, 777, 'nginx', '', '',
   '{"culprits": [{"pid": 99, "tid": 99, "comm": "kworker/1:2", "role": "ran_instead"}]}');

COMMIT;
