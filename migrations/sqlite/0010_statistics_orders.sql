-- Statistics orders (MiDAS): individual data released for statistical purposes. One row per order
-- with its current state and the facts its steps recorded; every step is also appended to
-- statistics_order_steps (who, when, what), which is the order's audit history.
CREATE TABLE statistics_orders (
    order_id                TEXT PRIMARY KEY,
    party_id                TEXT NOT NULL REFERENCES parties(party_id),
    order_reference         TEXT NOT NULL,
    project                 TEXT NOT NULL,
    purpose                 TEXT NOT NULL,
    legal_ground            TEXT NOT NULL,
    population_description  TEXT NOT NULL,
    benefit_types           TEXT NOT NULL,
    variables               TEXT NOT NULL,
    period_from             TEXT NOT NULL,
    period_to               TEXT NOT NULL,
    wished_delivery         TEXT,
    contact_name            TEXT NOT NULL,
    contact_email           TEXT NOT NULL,
    special_duty            BOOLEAN NOT NULL,
    state                   TEXT NOT NULL,
    submitted_at            BIGINT NOT NULL,
    receipt_due             TEXT NOT NULL,
    receipt_confirmed_at    BIGINT,
    quote_drafted_by        TEXT,
    quote_specification     TEXT,
    quote_centihours        BIGINT,
    quote_net_ore           BIGINT,
    quote_vat_ore           BIGINT,
    decision_by             TEXT,
    decision_text           TEXT,
    population_count        BIGINT NOT NULL,
    extracted_sequence      BIGINT,
    delivered_on            TEXT,
    retain_until            TEXT,
    invoice_net_ore         BIGINT,
    deleted_at              BIGINT,
    updated_at              BIGINT NOT NULL,
    UNIQUE (party_id, order_reference)
);
CREATE INDEX statistics_orders_state ON statistics_orders (state, receipt_due);

CREATE TABLE statistics_order_steps (
    order_id         TEXT NOT NULL REFERENCES statistics_orders(order_id),
    n                BIGINT NOT NULL,
    step             TEXT NOT NULL,
    side             TEXT NOT NULL,
    actor            TEXT NOT NULL,
    state_before     TEXT NOT NULL,
    state_after      TEXT NOT NULL,
    detail           TEXT NOT NULL,
    idempotency_key  TEXT,
    at               BIGINT NOT NULL,
    PRIMARY KEY (order_id, n),
    UNIQUE (order_id, idempotency_key)
);

-- The population (key) file: the project's serial number per person. Deleted with the files
-- after the retention period.
CREATE TABLE statistics_population (
    order_id  TEXT NOT NULL REFERENCES statistics_orders(order_id),
    serial    TEXT NOT NULL,
    person    TEXT NOT NULL,
    extra     TEXT NOT NULL,
    PRIMARY KEY (order_id, serial)
);
