-- The W3C trace context a run was started in (`traceparent`), kept so that
-- every attempt of the run, a recovered one too, continues the same trace.
ALTER TABLE runs ADD COLUMN traceparent TEXT;
