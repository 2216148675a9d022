-- History events carry their snapshot reason and notice state, reason and message in columns of
-- their own (they were one `detail` text, `STATE:REASON:message` for notices).
ALTER TABLE delivery_events ADD COLUMN state TEXT;
ALTER TABLE delivery_events ADD COLUMN reason TEXT;
ALTER TABLE delivery_events ADD COLUMN message TEXT;

UPDATE delivery_events SET reason = detail WHERE kind = 'SNAPSHOT';

-- A notice's detail is STATE:REASON:message; the message may itself hold colons.
UPDATE delivery_events
SET state = split_part(detail, ':', 1),
    reason = split_part(detail, ':', 2),
    message = regexp_replace(detail, '^[^:]*:[^:]*:', '')
WHERE kind = 'NOTICE';

ALTER TABLE delivery_events DROP COLUMN detail;
