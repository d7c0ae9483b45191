-- 7: how each process reached the database (TLS version and sslmode, or
-- not encrypted), for --status.
ALTER TABLE processes ADD COLUMN connection TEXT;
