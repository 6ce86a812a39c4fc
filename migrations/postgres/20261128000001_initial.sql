-- Users, signing keys and refresh tokens. Times are Unix seconds (UTC) so that both backends
-- compare them the same way; ids are UUIDs.

create table users (
    id uuid primary key,
    -- as first typed (SPEC §5: shown as first typed)
    username text not null,
    -- NFKC + full case folding: the form that makes two usernames one user
    username_key text not null constraint users_username_key unique,
    password_hash text not null,
    created_at bigint not null,
    disabled_at bigint
);

-- The key ring. Which key signs is computed from signs_from / signs_until and the clock, so every
-- replica reaches the same answer with no leader; `generation` is unique so that concurrent
-- attempts to create the same next key produce exactly one.
create table signing_keys (
    kid text primary key,
    generation bigint not null constraint signing_keys_generation_key unique,
    algorithm text not null,
    public_jwk text not null,
    -- AES-256-GCM under a key-encryption key; never stored in the clear
    private_key_encrypted bytea not null,
    created_at bigint not null,
    signs_from bigint not null,
    signs_until bigint,
    revoked_at bigint
);

-- Opaque refresh tokens, stored only as SHA-256 hashes. A family is every token rotated from one
-- grant: reuse of a used token ends the family (RFC 9700 §4.14).
create table refresh_tokens (
    id uuid primary key,
    token_hash bytea not null constraint refresh_tokens_token_hash_key unique,
    family_id uuid not null,
    user_id uuid not null references users (id) on delete cascade,
    client_id text not null,
    scope text not null,
    auth_time bigint not null,
    issued_at bigint not null,
    expires_at bigint not null,
    used_at bigint,
    revoked_at bigint
);

create index refresh_tokens_family_id_idx on refresh_tokens (family_id);
create index refresh_tokens_user_id_idx on refresh_tokens (user_id);
