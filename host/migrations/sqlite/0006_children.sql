-- Child workflows: the run that started a run, if a run did.
ALTER TABLE runs ADD COLUMN parent TEXT;
