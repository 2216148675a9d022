-- Each benefit record version as it is sent: the encoding of lefi.v1.BenefitRecord without
-- register_sequence and recorded_at (src/grpc/wire.rs), kept at ingest so that a delivery copies it
-- instead of parsing and converting the JSON body. NULL for person updates (they are sent as the
-- person, not as a record). Versions stored before this column, or written by an older lefi during
-- a rolling upgrade, are delivered from their body until the start of `lefi serve` fills them in.
ALTER TABLE register_log ADD COLUMN wire BLOB;

-- The format the stored encodings are in (src/grpc/wire.rs, WIRE_FORMAT): when a release changes
-- what a record's encoding holds, its start encodes every version again.
ALTER TABLE register_head ADD COLUMN wire_format BIGINT NOT NULL DEFAULT 0;
