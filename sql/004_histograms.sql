-- 004_histograms.sql: per-detector latency histograms in summaries
-- (fixed log2-microsecond buckets, so they add up across hosts and
-- intervals): {"runq": {"buckets": [...], "count": N, "sum_ns": S}, ...}.
ALTER TABLE summaries ADD COLUMN histograms jsonb NOT NULL DEFAULT '{}';
