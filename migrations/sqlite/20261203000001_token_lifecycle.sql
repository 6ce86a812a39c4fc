-- Refresh-token families as rows of their own (SPEC §9). A family is every refresh token rotated
-- from one grant. Its row is what rotation and revocation both lock, so they never race, and what
-- access tokens issued from the family are checked against: an ended family ends them too.
create table refresh_families (
    id blob primary key,
    user_id blob not null references users (id) on delete cascade,
    client_id text not null,
    created_at integer not null,
    -- when the family last issued tokens: its access tokens are all expired one access-token
    -- lifetime after this
    issued_at integer not null,
    -- when its newest refresh token expires
    expires_at integer not null,
    -- revoked, reuse detected, user disabled, client deleted, or leaked to another client
    ended_at integer
);

create index refresh_families_user_id_idx on refresh_families (user_id);
create index refresh_families_client_id_idx on refresh_families (client_id);
create index refresh_families_expires_at_idx on refresh_families (expires_at);
create index refresh_families_ended_at_idx on refresh_families (ended_at) where ended_at is not null;

-- Every family that has a token today; a token revoked before this migration ended its family.
insert into refresh_families (id, user_id, client_id, created_at, issued_at, expires_at, ended_at)
select family_id, min(user_id), min(client_id), min(issued_at), max(issued_at), max(expires_at),
       max(revoked_at)
from refresh_tokens
group by family_id;

-- The token each one was rotated from: a used token has at most one live successor.
alter table refresh_tokens add column parent_id blob;
create index refresh_tokens_parent_id_idx on refresh_tokens (parent_id);
create index refresh_tokens_expires_at_idx on refresh_tokens (expires_at);
create index refresh_tokens_used_at_idx on refresh_tokens (used_at) where used_at is not null;
create index refresh_tokens_revoked_at_idx on refresh_tokens (revoked_at) where revoked_at is not null;

-- Resource servers and gateways that may introspect any client's tokens (SPEC §9).
alter table clients add column may_introspect boolean not null default false;
