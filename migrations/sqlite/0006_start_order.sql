-- A stream started without a cursor pages through its party's subscriptions in id order
-- (store::delivery::start_subscriptions); without this index each page sorted all of them.
CREATE INDEX subscriptions_party_id_order ON subscriptions (party_id, subscription_id);
