-- Version 4: who made each change (an admin token's name, `breaker`, or `anonymous` when
-- authentication is off), and what an edit changed, as a JSON object {field: [old, new]}.
-- NULL in both for entries written before: not recorded then.
ALTER TABLE logs ADD COLUMN actor TEXT;
ALTER TABLE logs ADD COLUMN changes TEXT;
