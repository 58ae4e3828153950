-- Least-privilege PostgreSQL roles for examplebank: one per service role, plus eb_app for a
-- process that runs every role. Run it as the owner of the schema after `examplebank migrate`
-- (the migrator keeps the owner's rights; services connect as LOGIN users that are members of
-- these roles, e.g. `CREATE ROLE tx_service LOGIN PASSWORD '...' IN ROLE eb_transactions;`).
-- It is idempotent: run it again after every migration.
--
-- No role may UPDATE or DELETE audit entries: they can only append and read. Retention prunes
-- old entries through audit_prune(), which runs with its owner's rights and only removes a
-- prefix that ends at a signed checkpoint.

DO $$
DECLARE
    r TEXT;
BEGIN
    FOREACH r IN ARRAY ARRAY['eb_identity', 'eb_users', 'eb_transactions', 'eb_rewards', 'eb_erasure', 'eb_app'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
        -- Every role checks tokens (account and session alive) and writes the audit log.
        EXECUTE format('GRANT SELECT ON accounts, token_families TO %I', r);
        EXECUTE format('GRANT SELECT, INSERT ON audit_log, audit_checkpoints TO %I', r);
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_checkpoints FROM %I', r);
        EXECUTE format('GRANT EXECUTE ON FUNCTION audit_prune(BIGINT) TO %I', r);
    END LOOP;
END
$$;

-- identity: accounts, codes, sessions and refresh tokens.
GRANT INSERT, UPDATE ON accounts TO eb_identity;
GRANT SELECT, INSERT, UPDATE ON auth_codes, token_families, refresh_tokens TO eb_identity;
-- Split mode: the identity service forgets an account when the erasure service asks.
GRANT DELETE ON accounts, auth_codes, token_families, refresh_tokens TO eb_identity;

-- users: profile, consent ledger, requests; rectification re-seals account fields; export reads
-- the person's transactions and points.
GRANT SELECT, INSERT, UPDATE ON bank_users, privacy_requests TO eb_users;
GRANT SELECT, INSERT ON consent_events TO eb_users;
GRANT UPDATE (given_name_enc, family_name_enc, email_enc) ON accounts TO eb_users;
GRANT SELECT ON transactions, points_accounts, points_ledger TO eb_users;
-- Split mode: the users service forgets a profile when the erasure service asks.
GRANT DELETE ON bank_users, consent_events, privacy_requests TO eb_users;

-- transactions: charges with their outbox events, points, idempotency, rules, analytics.
GRANT SELECT, INSERT, UPDATE ON transactions, points_accounts, idempotency_keys, reward_rules TO eb_transactions;
GRANT SELECT, INSERT ON points_ledger, outbox TO eb_transactions;
GRANT SELECT ON bank_users, anonymous_facts, outbox TO eb_transactions;
-- Split mode: the transactions service forgets a person's charges (keeping anonymous facts)
-- when the erasure service asks.
GRANT DELETE ON transactions, outbox, points_accounts, points_ledger, idempotency_keys TO eb_transactions;
GRANT INSERT, UPDATE ON anonymous_facts TO eb_transactions;

-- rewards: drains the outbox and writes points once.
GRANT SELECT, UPDATE, DELETE ON outbox TO eb_rewards;
GRANT SELECT, UPDATE ON transactions TO eb_rewards;
GRANT SELECT, INSERT, UPDATE ON points_accounts TO eb_rewards;
GRANT SELECT, INSERT ON points_ledger TO eb_rewards;
GRANT SELECT ON reward_rules, bank_users TO eb_rewards;

-- erasure: removes people, writes anonymous facts, applies retention.
GRANT SELECT, DELETE ON accounts, bank_users, consent_events, points_accounts, points_ledger,
    idempotency_keys, transactions, outbox, auth_codes, token_families, refresh_tokens TO eb_erasure;
GRANT SELECT, INSERT, UPDATE, DELETE ON anonymous_facts, privacy_requests TO eb_erasure;
GRANT UPDATE (erasure_requested_at) ON bank_users TO eb_erasure;
-- Scheduled passes run once per period across replicas.
GRANT SELECT, INSERT, DELETE ON scheduled_runs TO eb_erasure;

-- One process running every role.
GRANT eb_identity, eb_users, eb_transactions, eb_rewards, eb_erasure TO eb_app;
