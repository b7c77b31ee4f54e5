-- Each run's epoch: incremented whenever the run is handed to a new
-- execution (a recovery, a resume). Journal writes and the run's end are
-- fenced by it, so an execution that lost its run writes nothing more.
ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
