-- Users, signing keys and refresh tokens. Times are Unix seconds (UTC) so that both backends
-- compare them the same way; ids are UUIDs.

create table users (
    id blob primary key,
    -- as first typed (SPEC §5: shown as first typed)
    username text not null,
    -- NFKC + full case folding: the form that makes two usernames one user
    username_key text not null constraint users_username_key unique,
    password_hash text not null,
    created_at integer not null,
    disabled_at integer
);

-- The key ring. Which key signs is computed from signs_from / signs_until and the clock, so every
-- replica reaches the same answer with no leader; `generation` is unique so that concurrent
-- attempts to create the same next key produce exactly one.
create table signing_keys (
    kid text primary key,
    generation integer not null constraint signing_keys_generation_key unique,
    algorithm text not null,
    public_jwk text not null,
    -- AES-256-GCM under a key-encryption key; never stored in the clear
    private_key_encrypted blob not null,
    created_at integer not null,
    signs_from integer not null,
    signs_until integer,
    revoked_at integer
);

-- Opaque refresh tokens, stored only as SHA-256 hashes. A family is every token rotated from one
-- grant: reuse of a used token ends the family (RFC 9700 §4.14).
create table refresh_tokens (
    id blob primary key,
    token_hash blob not null constraint refresh_tokens_token_hash_key unique,
    family_id blob not null,
    user_id blob not null references users (id) on delete cascade,
    client_id text not null,
    scope text not null,
    auth_time integer not null,
    issued_at integer not null,
    expires_at integer not null,
    used_at integer,
    revoked_at integer
);

create index refresh_tokens_family_id_idx on refresh_tokens (family_id);
create index refresh_tokens_user_id_idx on refresh_tokens (user_id);
