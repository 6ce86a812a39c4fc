-- Events to other services (SPEC §7): a transactional outbox. An event is inserted in the same
-- transaction as the change it reports, with one delivery row per destination that should get
-- it; the delivery loops of every replica claim due rows, send them, and record the outcome.

create table events (
    -- the SET's jti, the same on every retry and for every destination
    id blob primary key,
    -- signup, signin, user_disabled, user_enabled, refresh_token_reused
    kind text not null,
    user_id blob not null,
    username text not null,
    -- the client the user signed in to, or whose refresh token was reused
    client_id text,
    occurred_at bigint not null
);

create table event_deliveries (
    event_id blob not null references events (id) on delete cascade,
    -- "push <url>" (a SET per RFC 8935) or "quest <url>" (the old service's call)
    destination text not null,
    -- pending, delivered or dead
    status text not null default 'pending',
    attempts bigint not null default 0,
    -- Unix milliseconds: when the next attempt is due
    next_attempt_at bigint not null,
    -- Unix milliseconds: a replica that claimed the row sends it until then; another may
    -- claim it after (the first one died)
    lease_until bigint not null default 0,
    -- the claim that holds the lease
    claim blob,
    -- Unix milliseconds from which EVENT_MAX_AGE is counted: the event, or its last manual retry
    counted_from bigint not null,
    last_error text,
    -- Unix milliseconds
    delivered_at bigint,
    primary key (event_id, destination)
);
create index event_deliveries_due on event_deliveries (destination, next_attempt_at)
    where status = 'pending';
create index event_deliveries_status on event_deliveries (status, delivered_at);
