-- Per-module limits, set at deploy time within the host's bounds (JSON), and
-- each run's wall-clock deadline (ms since the epoch; NULL: none).
ALTER TABLE module_versions ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN deadline INTEGER;
