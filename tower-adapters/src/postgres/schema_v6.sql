-- Version 6: no foreign keys from log entries and outbox records to their app. Tower writes
-- both only in the transaction that holds the app's row lock, and never deletes an app's row
-- (a deleted app keeps it, marked deleted_at), so the constraints could never fail; they cost
-- every change a look-up of the app's row for each entry and record it writes.
ALTER TABLE logs DROP CONSTRAINT logs_app_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_app_id_fkey;
