-- The positions parties report with DeliveryService.CommitCursor: per party and consumer, the
-- register sequence its cursor has reached, for lag monitoring (delivery never depends on it).
CREATE TABLE cursor_commits (
    party_id           TEXT NOT NULL REFERENCES parties(party_id),
    consumer           TEXT NOT NULL,
    register_sequence  BIGINT NOT NULL,
    committed_at       BIGINT NOT NULL,
    PRIMARY KEY (party_id, consumer)
);

-- Every full refresh a party asked for, with its reason, for follow-up.
CREATE TABLE full_refreshes (
    party_id            TEXT NOT NULL REFERENCES parties(party_id),
    seq                 BIGINT NOT NULL,
    requested_at        BIGINT NOT NULL,
    reason              TEXT NOT NULL,
    subscription_count  BIGINT NOT NULL,
    PRIMARY KEY (party_id, seq)
);
