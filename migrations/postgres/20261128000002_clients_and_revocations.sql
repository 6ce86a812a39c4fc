-- Registered OAuth clients, and access tokens revoked before their expiry.

create table clients (
    id text primary key,
    name text not null,
    -- SHA-256 of the client secret; null for a public client. The secret is random and
    -- high-entropy, so a fast hash is right (argon2 is for human passwords).
    secret_hash bytea,
    -- space-separated grant types and scopes
    grant_types text not null,
    scopes text not null,
    created_at bigint not null
);

-- Revoked access tokens by jti, kept until the token would have expired anyway (RFC 7009 §2).
create table revoked_access_tokens (
    jti text primary key,
    expires_at bigint not null,
    revoked_at bigint not null
);

create index revoked_access_tokens_expires_at_idx on revoked_access_tokens (expires_at);
create index refresh_tokens_client_id_idx on refresh_tokens (client_id);
