-- test_kernels_report.sql: a synthetic fleet's rollups for the kernel
-- report test (test_kernels_report.c), written straight into the tables of
-- sql/006_rollups.sql the way ingest would have summed them (by host-hour,
-- then per kernel-hour and per label-set-day).
--
-- 300 hosts (labels rack r0..r9, role web|db), 100 on each of three
-- kernel releases, every host covered for the last 48 whole hours:
--   runq spikes: 1 in 10 host-hours on 6.1.0-13 and 6.1.0-17, 3 in 10 on
--                6.1.0-18 (the regression), spread deterministically;
--   accounting:  1 in 50 host-hours everywhere;
--   runq waits:  per host-hour 1000 in [32, 64) us, 500 in [64, 128),
--                50 in [128, 256), 2 in [1, 2) ms; on 6.1.0-18 the same
--                counts two buckets (4x) further up.
-- Two incidents with a ranked #1 suspect (suspects_at in the future, so
-- a running correlator leaves them alone): a recurring runq one on the
-- 6.1.0-18 hosts (kernel:6.1.0-18-amd64), a periodic mmap_lock_wait one
-- on 20 hosts of 6.1.0-13 (atop).
CREATE TEMP TABLE f_host AS
SELECT i, md5('kr-host-' || i)::uuid AS host_id, md5('kr-boot-' || i)::uuid AS boot_id,
       (ARRAY['6.1.0-13-amd64', '6.1.0-17-amd64', '6.1.0-18-amd64'])[1 + i % 3] AS k,
       'r' || (i % 10) AS rack
FROM generate_series(0, 299) i;
INSERT INTO hosts (host_id, hostname, labels, last_boot_id)
SELECT host_id, format('kr-%s', i), jsonb_build_object('rack', rack, 'role', CASE WHEN i % 2 = 0 THEN 'web' ELSE 'db' END), boot_id FROM f_host;
INSERT INTO boots (host_id, boot_id, kernel_release) SELECT host_id, boot_id, k FROM f_host;
CREATE TEMP TABLE f_lab AS
SELECT f.host_id, hashtextextended(h.labels::text, 0) AS l, h.labels FROM f_host f JOIN hosts h USING (host_id);
INSERT INTO rollup_labelsets (labels_id, labels) SELECT DISTINCT ON (l) l, labels FROM f_lab ORDER BY l;
-- every host-hour: coverage, events and the runq histogram
CREATE TEMP TABLE f_hh AS
SELECT f.i, f.host_id, f.k, l.l, date_trunc('hour', now(), 'UTC') - h * interval '1 hour' AS hour, h
FROM f_host f JOIN f_lab l USING (host_id), generate_series(1, 48) h;
CREATE TEMP TABLE f_kind AS
SELECT host_id, k, l, hour, 'runq' AS kind,
  CASE WHEN k = '6.1.0-18-amd64' THEN ((h + i) % 10 IN (0, 3, 6))::int ELSE ((h + i) % 10 = 0)::int END AS events,
  1552 AS hc, 1552 * CASE WHEN k = '6.1.0-18-amd64' THEN 200000 ELSE 50000 END AS hs,
  CASE WHEN k = '6.1.0-18-amd64' THEN NULL ELSE 1000 END AS b05,
  CASE WHEN k = '6.1.0-18-amd64' THEN NULL ELSE 500 END AS b06,
  CASE WHEN k = '6.1.0-18-amd64' THEN 1000 ELSE 50 END AS b07,
  CASE WHEN k = '6.1.0-18-amd64' THEN 500 ELSE NULL END AS b08,
  CASE WHEN k = '6.1.0-18-amd64' THEN 50 ELSE NULL END AS b09,
  CASE WHEN k = '6.1.0-18-amd64' THEN NULL ELSE 2 END AS b10,
  CASE WHEN k = '6.1.0-18-amd64' THEN 2 ELSE NULL END AS b12
FROM f_hh
UNION ALL
SELECT host_id, k, l, hour, 'accounting', ((h + i) % 50 = 7)::int, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM f_hh;
INSERT INTO rollup_host_day (day, host_id, kernel_release, covered_s, summaries)
SELECT (hour AT TIME ZONE 'UTC')::date, host_id, k, 3600 * count(*), 360 * count(*) FROM f_hh GROUP BY 1, 2, 3;
INSERT INTO rollup_kernel_hour (hour, kernel_release, slot, covered_s, summaries)
SELECT hour, k, 0, 3600 * count(*), 360 * count(*) FROM f_hh GROUP BY 1, 2;
INSERT INTO rollup_labels_day (day, labels_id, kernel_release, slot, covered_s, summaries)
SELECT (hour AT TIME ZONE 'UTC')::date, l, k, 0, 3600 * count(*), 360 * count(*) FROM f_hh GROUP BY 1, 2, 3;
INSERT INTO rollup_kernel_hour_kind (hour, kernel_release, kind, slot, events, hist_count, hist_sum_ns,
       b05, b06, b07, b08, b09, b10, b12)
SELECT hour, k, kind, 0, sum(events), sum(hc), sum(hs), sum(b05), sum(b06), sum(b07), sum(b08),
       sum(b09), sum(b10), sum(b12)
FROM f_kind GROUP BY 1, 2, 3;
INSERT INTO rollup_labels_day_kind (day, labels_id, kernel_release, kind, slot, events, hist_count,
       hist_sum_ns, b05, b06, b07, b08, b09, b10, b12)
SELECT (hour AT TIME ZONE 'UTC')::date, l, k, kind, 0, sum(events), sum(hc), sum(hs), sum(b05),
       sum(b06), sum(b07), sum(b08), sum(b09), sum(b10), sum(b12)
FROM f_kind GROUP BY 1, 2, 3, 4;
-- the incidents
INSERT INTO incidents (incident_id, kind, type, first_ts, last_ts, hosts, events, suspects_at)
VALUES (900001, 'runq', 'recurring', now() - interval '40 hours', now() - interval '2 hours', 100, 1440, now() + interval '1 day'),
       (900002, 'mmap_lock_wait', 'periodic', now() - interval '30 hours', now() - interval '1 hours', 20, 580, now() + interval '1 day');
INSERT INTO incident_suspects (incident_id, rank, feature, spiking_with, spiking_total, others_with, others_total, p_value, log10_p, score)
VALUES (900001, 1, 'kernel:6.1.0-18-amd64', 100, 100, 0, 200, 1e-80, -80, 80),
       (900002, 1, 'cmdline:atop -R -w /var/log/atop/atop_# #', 20, 20, 3, 280, 1e-30, -30, 30);
INSERT INTO incident_hosts (incident_id, host_id, events, first_ts, last_ts)
SELECT 900001, host_id, 14, now() - interval '40 hours', now() - interval '2 hours' FROM f_host WHERE k = '6.1.0-18-amd64'
UNION ALL
SELECT 900002, host_id, 29, now() - interval '30 hours', now() - interval '1 hours' FROM f_host WHERE k = '6.1.0-13-amd64' AND i < 60;
