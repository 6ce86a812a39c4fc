-- Browser sign-in (SPEC §6): clients' redirect URIs, browser sessions, sign-in forms waiting for
-- a password, and authorization codes. Every secret is stored as its SHA-256 only.

-- Space-separated; a registered URI has no spaces.
alter table clients add column redirect_uris text not null default '';
alter table clients add column post_logout_redirect_uris text not null default '';

create table browser_sessions (
    id_hash blob primary key,
    -- the public id, the ID token's sid
    sid text not null constraint browser_sessions_sid_key unique,
    user_id blob not null references users (id) on delete cascade,
    auth_time integer not null,
    created_at integer not null,
    expires_at integer not null
);
create index browser_sessions_expires_at on browser_sessions (expires_at);

create table signin_forms (
    id_hash blob primary key,
    -- the browser the form was shown to
    binding_hash blob not null,
    client_id text not null,
    redirect_uri text not null,
    scope text not null,
    state text,
    nonce text,
    code_challenge text not null,
    login_hint text,
    expires_at integer not null
);
create index signin_forms_expires_at on signin_forms (expires_at);

create table authorization_codes (
    code_hash blob primary key,
    client_id text not null,
    user_id blob not null references users (id) on delete cascade,
    redirect_uri text not null,
    scope text not null,
    nonce text,
    code_challenge text not null,
    sid text not null,
    auth_time integer not null,
    -- the refresh-token family its redemption starts, ended if the code is replayed
    family_id blob not null,
    expires_at integer not null,
    used_at integer
);
create index authorization_codes_expires_at on authorization_codes (expires_at);
