-- Failed sign-ins in a row, per account (by username key, known or not, so that throttling
-- tells nothing about which usernames exist). Kept in the database so every replica counts
-- the same failures (SPEC §5).
create table signin_failures (
    username_key text primary key,
    failures integer not null,
    blocked_until integer,
    last_failure_at integer not null
);

create index signin_failures_last_failure_at_idx on signin_failures (last_failure_at);
