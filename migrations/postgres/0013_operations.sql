-- Per-party limits set by an operator (NULL: the server's configured default), and the audit actions
-- that record each change and the agency's suspension, resumption and ending of subscriptions.
ALTER TABLE parties ADD COLUMN max_streams BIGINT CHECK (max_streams >= 1);
ALTER TABLE parties ADD COLUMN requests_per_second BIGINT CHECK (requests_per_second >= 1);
ALTER TABLE parties ADD COLUMN rate_burst BIGINT CHECK (rate_burst >= 1);

ALTER TABLE party_audit DROP CONSTRAINT party_audit_action_check;
ALTER TABLE party_audit ADD CONSTRAINT party_audit_action_check CHECK (action IN ('APPLY', 'SEND_AGREEMENT',
    'RECORD_SIGNATURE', 'ADD_CERTIFICATE', 'REVOKE_CERTIFICATE', 'SCHEDULE_TERMINATION',
    'WITHDRAW_TERMINATION', 'TERMINATION_TOOK_EFFECT', 'SET_LIMITS',
                              'SUSPEND_SUBSCRIPTIONS', 'RESUME_SUBSCRIPTIONS', 'END_SUBSCRIPTIONS'));
