-- The children of a run, for cancelling a run's tree.
CREATE INDEX runs_by_parent ON runs (parent) WHERE parent IS NOT NULL;
