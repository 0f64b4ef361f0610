-- Version 5: the transaction that last changed each app row, so the live feed reads only the
-- apps that changed since it last looked: those changed by a transaction at least as new as
-- the oldest one running when it last looked (xid8 never wraps around).
ALTER TABLE apps ADD COLUMN changed xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX apps_changed ON apps (changed);
CREATE FUNCTION tower_app_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed := pg_current_xact_id();
    RETURN NEW;
END
$$;
CREATE TRIGGER apps_changed BEFORE UPDATE ON apps FOR EACH ROW EXECUTE FUNCTION tower_app_changed();
