-- Identity: accounts, authorisation codes, refresh-token families.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    username_index BYTEA NOT NULL UNIQUE,
    username_enc BYTEA NOT NULL,
    given_name_enc BYTEA,
    family_name_enc BYTEA,
    email_enc BYTEA,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('person', 'admin')),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    password_changed_at BIGINT NOT NULL,
    last_login_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE token_families (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX token_families_account ON token_families(account_id);

CREATE TABLE auth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    family_id TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

-- Users: the bank profile and the append-only consent ledger.
CREATE TABLE bank_users (
    id TEXT PRIMARY KEY,
    registered_at BIGINT NOT NULL,
    consent_rewards BIGINT NOT NULL,
    consent_analytics BIGINT NOT NULL,
    consent_profiling BIGINT NOT NULL,
    restricted_at BIGINT,
    objected_at BIGINT,
    erasure_requested_at BIGINT
);

CREATE TABLE consent_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted BIGINT NOT NULL,
    policy_version TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX consent_events_user ON consent_events(user_id, seq);

CREATE TABLE privacy_requests (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    run_after BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX privacy_requests_user ON privacy_requests(user_id);
CREATE INDEX privacy_requests_open ON privacy_requests(kind, status, run_after);
-- At most one pending erasure per person, however many requests arrive at once.
CREATE UNIQUE INDEX privacy_requests_one_pending_erasure ON privacy_requests(user_id)
    WHERE kind = 'erasure' AND status = 'pending';

-- Transactions, points and the reward outbox.
CREATE TABLE transactions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT,
    name_enc BYTEA,
    category TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    month TEXT NOT NULL,
    points_earned BIGINT,
    processed BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX transactions_user_seq ON transactions(user_id, seq);
CREATE INDEX transactions_month ON transactions(month, category);

CREATE TABLE points_accounts (
    user_id TEXT PRIMARY KEY,
    balance BIGINT NOT NULL CHECK (balance >= 0),
    earned BIGINT NOT NULL,
    redeemed BIGINT NOT NULL
);

CREATE TABLE points_ledger (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    delta BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('earned', 'redeemed')),
    reference TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX points_ledger_user ON points_ledger(user_id, seq);

CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE reward_rules (
    category TEXT PRIMARY KEY,
    points_per_unit BIGINT NOT NULL CHECK (points_per_unit BETWEEN 0 AND 100),
    updated_at BIGINT NOT NULL
);
INSERT INTO reward_rules (category, points_per_unit, updated_at) VALUES
    ('groceries', 2, 0), ('fuel', 3, 0), ('dining', 1, 0), ('coffee', 1, 0), ('transport', 1, 0),
    ('shopping', 1, 0), ('travel', 1, 0), ('entertainment', 1, 0), ('utilities', 1, 0),
    ('health', 1, 0), ('other', 1, 0);

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    claimed_until BIGINT,
    parked_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_ready ON outbox(available_at) WHERE parked_at IS NULL;

-- What is left of an erased person's spending: per month and category, how many erased people
-- contributed and how many charges fell in each amount band. No person id, no merchant, no
-- exact time or amount.
CREATE TABLE anonymous_facts (
    month TEXT NOT NULL,
    category TEXT NOT NULL,
    contributors BIGINT NOT NULL,
    band_under_10 BIGINT NOT NULL,
    band_10_to_50 BIGINT NOT NULL,
    band_50_to_100 BIGINT NOT NULL,
    band_100_to_500 BIGINT NOT NULL,
    band_500_up BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (month, category)
);

-- The tamper-evident audit log: each entry is hash-chained to the one before; checkpoints sign
-- the chain head. Entries hold pseudonymous ids only, never personal data.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log(actor);
CREATE INDEX audit_log_target ON audit_log(target);

CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('examplebank.audit_pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Retention is the only way entries leave the log: entries older than the cutoff, up to the
-- newest signed checkpoint before it, so the remaining chain still starts at a checkpoint.
-- Runs with its owner's rights; application roles may execute it but hold no DELETE right.
CREATE FUNCTION audit_prune(cutoff BIGINT) RETURNS BIGINT LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public AS $$
DECLARE
    upto BIGINT;
    removed BIGINT;
BEGIN
    SELECT MAX(c.seq) INTO upto FROM audit_checkpoints c
        JOIN audit_log l ON l.seq = c.seq WHERE l.at < cutoff;
    IF upto IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM set_config('examplebank.audit_pruning', 'on', true);
    DELETE FROM audit_log WHERE seq <= upto;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('examplebank.audit_pruning', 'off', true);
    RETURN removed;
END;
$$;
