-- Listing runs newest first, page by page: (created_at, id) is the cursor.
CREATE INDEX runs_newest_first ON runs (created_at DESC, id DESC);
