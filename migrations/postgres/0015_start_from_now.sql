-- Issue 17. A subscription created "from now" starts with a notice instead of a snapshot of the
-- register: the party says it already holds the history. Existing subscriptions started with a
-- snapshot.
ALTER TABLE subscriptions ADD COLUMN start TEXT NOT NULL DEFAULT 'SNAPSHOT' CHECK (start IN ('SNAPSHOT', 'NOW'));
-- The last day a subscription runs (YYYY-MM-DD; '' = no end): the day after it, `lefi serve` ends
-- it with a notice (END_DATE_REACHED).
ALTER TABLE subscriptions ADD COLUMN end_date TEXT NOT NULL DEFAULT '';
