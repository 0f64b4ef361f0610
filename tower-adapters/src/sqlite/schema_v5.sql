-- Version 5: a counter of app changes, so the live feed reads only the apps that changed since
-- it last looked. SQLite commits one writer at a time, so the counter grows in commit order.
ALTER TABLE apps ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
UPDATE apps SET changed = id;
CREATE INDEX apps_changed ON apps (changed);
CREATE TRIGGER apps_count_insert AFTER INSERT ON apps BEGIN
    UPDATE apps SET changed = (SELECT max(changed) FROM apps) + 1 WHERE id = NEW.id;
END;
CREATE TRIGGER apps_count_update AFTER UPDATE OF title, revision, updated_at, deleted_at ON apps BEGIN
    UPDATE apps SET changed = (SELECT max(changed) FROM apps) + 1 WHERE id = NEW.id;
END;
