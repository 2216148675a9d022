-- Extract files are stored in 1 MiB chunks. The Parquet files are already compressed (Snappy), and
-- PostgreSQL's default TOAST compression (pglz) of the CSV chunks took most of the time of storing an
-- extract (2–3 s of a 14 s extract at 100,000 persons, see docs/BENCHMARKS.md) for space that is
-- given back when the order's files are deleted after six months. Chunks are kept out of line,
-- uncompressed.
ALTER TABLE statistics_file_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
