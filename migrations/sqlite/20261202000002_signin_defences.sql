-- The sign-in and signup defences of SPEC §8, in the database so that every replica counts the
-- same attempts. All times are Unix seconds except rate_limits.tat, in milliseconds.

-- Failed sign-ins in a row per account and client address (a username key, known or not, so that
-- throttling tells nothing about which usernames exist). An attempt is counted before its
-- password is checked, and a success from that address deletes the row. The next attempt may
-- come at last_attempt_at + delay_seconds.
create table signin_streaks (
    username_key text not null,
    address text not null,
    failures integer not null,
    delay_seconds integer not null,
    last_attempt_at integer not null,
    constraint signin_streaks_pkey primary key (username_key, address)
);

create index signin_streaks_last_attempt_at_idx on signin_streaks (last_attempt_at);

-- Failures in fixed windows, per account ('account:<username key>') and per client address
-- ('address:<address>'), across all of them.
create table failure_windows (
    key text primary key,
    window_start integer not null,
    failures integer not null
);

create index failure_windows_window_start_idx on failure_windows (window_start);

-- Where each account signed in successfully: a client address, or 'device:<SHA-256 of a device
-- cookie>'. These sources may still sign in while the account's failures are over the limit.
create table trusted_signin_sources (
    username_key text not null,
    source text not null,
    last_success_at integer not null,
    constraint trusted_signin_sources_pkey primary key (username_key, source)
);

create index trusted_signin_sources_last_success_at_idx on trusted_signin_sources (last_success_at);

-- Per-address budgets (password checks, signups) as a generic cell rate algorithm: tat is the
-- theoretical arrival time, in milliseconds, of the next request the budget allows.
create table rate_limits (
    key text primary key,
    tat integer not null
);

create index rate_limits_tat_idx on rate_limits (tat);

-- Replaced by signin_streaks: a streak per account alone let anyone lock its owner out.
drop table signin_failures;
