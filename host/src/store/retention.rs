//! What retention deletes, in the SQL both backends run: finished runs
//! that ended before a cutoff, with their journal, events, event history,
//! messages, waits and streams; a run's children go with their parent or
//! not at all. Then module versions that are not current and that no run
//! uses, and the blobs no version has any more.
//!
//! The statements are written once with `$1`-style parameters: PostgreSQL
//! reads them as positions, SQLite as named parameters numbered in the
//! order they first appear, which here is the same.

/// The runs to delete in one batch: up to `$2` finished root runs (no
/// parent) that ended before `$1`, oldest first, and all their
/// descendants; a tree with a run still going is left whole. (A root's
/// direct children are checked up front, so that the oldest trees still
/// going cannot fill every batch.) A run that ended before the cutoff was
/// created before it: the scan walks the index on `created_at`, which no
/// write changes; an index on `updated_at` would cost every update of a
/// run an index write (on PostgreSQL, its HOT update).
pub const DOOMED_RUNS: &str = "
WITH RECURSIVE
  roots (id) AS (
    SELECT id FROM runs AS root
    WHERE created_at < $1 AND updated_at < $1
      AND parent IS NULL AND status NOT IN ('PENDING', 'ENQUEUED')
      AND NOT EXISTS (
        SELECT 1 FROM runs AS child
        WHERE child.parent = root.id AND child.status IN ('PENDING', 'ENQUEUED'))
    ORDER BY created_at
    LIMIT $2),
  tree (id, root) AS (
    SELECT id, id FROM roots
    UNION ALL
    SELECT runs.id, tree.root FROM runs JOIN tree ON runs.parent = tree.id),
  going (root) AS (
    SELECT tree.root FROM tree JOIN runs ON runs.id = tree.id
    WHERE runs.status IN ('PENDING', 'ENQUEUED'))
SELECT id FROM tree WHERE root NOT IN (SELECT root FROM going)";

/// The tables that hold rows of a run, by its id in `run_id`; the run's
/// own row (`runs.id`) is deleted after them.
pub const RUN_TABLES: &[&str] = &[
    "journal",
    "events",
    "event_history",
    "messages",
    "run_waits",
    "stream_entries",
];

/// Versions deployed under a name since replaced by a later deployment,
/// that no run uses.
pub const UNUSED_VERSIONS: &str = "
DELETE FROM module_versions
WHERE deployed_at < (
    SELECT MAX(later.deployed_at) FROM module_versions AS later
    WHERE later.name = module_versions.name)
  AND NOT EXISTS (
    SELECT 1 FROM runs
    WHERE runs.module = module_versions.name AND runs.version = module_versions.version)";

/// The blobs no deployment has any more; their versions.
pub const UNUSED_BLOBS: &str = "
DELETE FROM module_blobs
WHERE NOT EXISTS (
    SELECT 1 FROM module_versions WHERE module_versions.version = module_blobs.version)
RETURNING version";
