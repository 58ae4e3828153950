-- Scheduled work (retention passes) runs once per period however many replicas run it: the
-- replica whose insert succeeds does the work.
CREATE TABLE scheduled_runs (
    job TEXT NOT NULL,
    period BIGINT NOT NULL,
    holder TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (job, period)
);
