-- 002_stacks.sql: on-CPU stack samples in summaries. Stacks are a
-- fleet-wide dictionary (one row per distinct folded stack, keyed by a
-- 64-bit hash of its text, a reference table under Citus); each summary
-- row carries the interval's top stacks and per-process sample counts as
-- compact parallel arrays.

CREATE TABLE stacks (
    stack_id   bigint PRIMARY KEY,          -- FNV-1a 64 of folded, as signed
    folded     text NOT NULL,               -- "comm;outer;...;inner"
    first_seen timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE summaries
    ADD COLUMN stack_ids     bigint[],      -- element i counted stack_counts[i] samples
    ADD COLUMN stack_counts  integer[],
    ADD COLUMN proc_pids     integer[],     -- per-process on-CPU sample counts
    ADD COLUMN proc_comms    text[],
    ADD COLUMN proc_samples  integer[],
    ADD COLUMN samples_total bigint NOT NULL DEFAULT 0;
