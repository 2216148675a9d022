-- A subscription created "from now" (issue 17) starts with a notice instead of a snapshot of the
-- register: the party says it already holds the history. Existing subscriptions started with a
-- snapshot.
ALTER TABLE subscriptions ADD COLUMN start TEXT NOT NULL DEFAULT 'SNAPSHOT' CHECK (start IN ('SNAPSHOT', 'NOW'));
