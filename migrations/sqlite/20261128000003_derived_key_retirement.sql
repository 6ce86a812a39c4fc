-- When a key stops signing is derived from its successor's signs_from (see src/keys/lifecycle.rs),
-- so a stored end time could only disagree with it.
alter table signing_keys drop column signs_until;
