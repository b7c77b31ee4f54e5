-- HTTP triggers. A module is a workflow module or a wasi:http handler; each
-- module name has the routes manifest of its latest deployment (JSON), which
-- a deployment replaces in the same transaction as it records the version.
ALTER TABLE module_versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'workflow';
CREATE TABLE module_routes (
    name      TEXT PRIMARY KEY,
    manifest  TEXT NOT NULL
);
