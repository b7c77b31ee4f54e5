-- Retention: finished top-level runs by when they ended (their last
-- update), oldest first, for deleting those older than the window.
CREATE INDEX runs_finished_roots ON runs (updated_at)
    WHERE parent IS NULL AND status NOT IN ('PENDING', 'ENQUEUED');
