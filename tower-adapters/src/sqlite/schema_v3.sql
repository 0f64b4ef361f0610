-- Version 3: why a log entry happened, beyond its action (the breaker's evidence for a trip:
-- "412 requests, 61 failures: failure rate above 10 % with 99 % confidence"). NULL: nothing more.
ALTER TABLE logs ADD COLUMN detail TEXT;
