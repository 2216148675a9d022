-- Subscriptions (beställningar) and each party's delivery history.

-- One order: person x benefit types x from-date under one legal basis.
CREATE TABLE subscriptions (
    subscription_id   TEXT PRIMARY KEY,
    party_id          TEXT NOT NULL REFERENCES parties(party_id),
    client_reference  TEXT NOT NULL,
    person            TEXT NOT NULL,
    benefit_types     TEXT NOT NULL,
    from_date         TEXT NOT NULL,
    legal_basis       TEXT NOT NULL REFERENCES legal_bases(code),
    case_reference    TEXT NOT NULL,
    consent_id        TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('ACTIVE', 'SUSPENDED', 'ENDED')),
    state_reason      TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    created_seq       BIGINT NOT NULL,
    ended_at          BIGINT,
    ended_seq         BIGINT,
    UNIQUE (party_id, client_reference)
);
CREATE INDEX subscriptions_person ON subscriptions (person, state);
CREATE INDEX subscriptions_party ON subscriptions (party_id, created_at, subscription_id);
CREATE INDEX subscriptions_consent ON subscriptions (consent_id);
CREATE INDEX subscriptions_case ON subscriptions (party_id, case_reference);

-- Each party's delivery history, written when it happens (fan-out on write): a snapshot when a
-- subscription is created or refreshed, a change for every register fact that concerns an active
-- subscription, a notice when a subscription's state changes. `seq` is the global register
-- sequence the event stands at (party events take their own sequence from register_head), and
-- `ord` orders a party's events at the same sequence. Streams read this table in (seq, ord) order.
CREATE TABLE delivery_events (
    party_id         TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    ord              BIGINT NOT NULL,
    subscription_id  TEXT NOT NULL,
    event_number     BIGINT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('SNAPSHOT', 'CHANGE', 'NOTICE')),
    detail           TEXT NOT NULL,
    recorded_at      BIGINT NOT NULL,
    PRIMARY KEY (party_id, seq, ord)
);
CREATE INDEX delivery_events_subscription ON delivery_events (subscription_id, event_number);

-- Secrets shared by every replica on this database (the cursor signing key).
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- How far each party's delivery history has been pruned: cursors at or below it have expired.
CREATE TABLE delivery_horizon (
    party_id            TEXT PRIMARY KEY,
    pruned_through_seq  BIGINT NOT NULL
);
