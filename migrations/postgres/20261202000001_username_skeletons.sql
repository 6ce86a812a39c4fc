-- The UTS #39 confusable skeleton of username_key: names that only look alike (`аlice` with a
-- Cyrillic `а`, and `alice`) share it, so its uniqueness keeps them one user (SPEC §8). Null
-- until start-up fills it in for rows made before this column, and for a row whose skeleton an
-- earlier user already holds.
alter table users add column username_skeleton text;

create unique index users_username_skeleton_key on users (username_skeleton);

-- The rows start-up still has to fill in, in the order they were made; it holds none of the
-- rows that have their skeleton.
create index users_username_skeleton_missing_idx on users (created_at, id)
    where username_skeleton is null;
