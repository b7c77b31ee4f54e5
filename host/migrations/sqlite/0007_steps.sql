-- Steps: each attempt is a journal row of kind 'step' with its number, its
-- start, and the error of an attempt that failed (`deadline` is then when the
-- next attempt starts, NULL when the step gave up).
ALTER TABLE journal ADD COLUMN error TEXT;
ALTER TABLE journal ADD COLUMN attempt INTEGER;
ALTER TABLE journal ADD COLUMN started_at INTEGER;
