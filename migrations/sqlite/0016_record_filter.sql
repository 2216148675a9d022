-- Issue 17: filtered subscriptions. Each log row's topic: the kind of a decision or a person event
-- ('' for other facts), so that fan-out can filter by it without reading the body; subscriptions
-- keep their filter as a list of topics ('' = everything; see domain::delivery::RecordFilter).
ALTER TABLE register_log ADD COLUMN topic TEXT NOT NULL DEFAULT '';
UPDATE register_log SET topic = COALESCE(json_extract(body, '$.kind'), '')
    WHERE fact_type IN ('DECISION', 'EVENT');
ALTER TABLE subscriptions ADD COLUMN record_filter TEXT NOT NULL DEFAULT '';
