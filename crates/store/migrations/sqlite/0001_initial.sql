-- Identity: accounts, authorisation codes, refresh-token families.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    username_index BLOB NOT NULL UNIQUE,
    username_enc BLOB NOT NULL,
    given_name_enc BLOB,
    family_name_enc BLOB,
    email_enc BLOB,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('person', 'admin')),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    password_changed_at INTEGER NOT NULL,
    last_login_at INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE token_families (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
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
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

-- Users: the bank profile and the append-only consent ledger.
CREATE TABLE bank_users (
    id TEXT PRIMARY KEY,
    registered_at INTEGER NOT NULL,
    consent_rewards INTEGER NOT NULL,
    consent_analytics INTEGER NOT NULL,
    consent_profiling INTEGER NOT NULL,
    restricted_at INTEGER,
    objected_at INTEGER,
    erasure_requested_at INTEGER
);

CREATE TABLE consent_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX consent_events_user ON consent_events(user_id, seq);

CREATE TABLE privacy_requests (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    run_after INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    completed_at INTEGER
);
CREATE INDEX privacy_requests_user ON privacy_requests(user_id);
CREATE INDEX privacy_requests_open ON privacy_requests(kind, status, run_after);
-- At most one pending erasure per person, however many requests arrive at once.
CREATE UNIQUE INDEX privacy_requests_one_pending_erasure ON privacy_requests(user_id)
    WHERE kind = 'erasure' AND status = 'pending';

-- Transactions, points and the reward outbox.
CREATE TABLE transactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT,
    name_enc BLOB,
    category TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    month TEXT NOT NULL,
    points_earned INTEGER,
    processed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX transactions_user_seq ON transactions(user_id, seq);
CREATE INDEX transactions_month ON transactions(month, category);

CREATE TABLE points_accounts (
    user_id TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    earned INTEGER NOT NULL,
    redeemed INTEGER NOT NULL
);

CREATE TABLE points_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    delta INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('earned', 'redeemed')),
    reference TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX points_ledger_user ON points_ledger(user_id, seq);

CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE reward_rules (
    category TEXT PRIMARY KEY,
    points_per_unit INTEGER NOT NULL CHECK (points_per_unit BETWEEN 0 AND 100),
    updated_at INTEGER NOT NULL
);
INSERT INTO reward_rules (category, points_per_unit, updated_at) VALUES
    ('groceries', 2, 0), ('fuel', 3, 0), ('dining', 1, 0), ('coffee', 1, 0), ('transport', 1, 0),
    ('shopping', 1, 0), ('travel', 1, 0), ('entertainment', 1, 0), ('utilities', 1, 0),
    ('health', 1, 0), ('other', 1, 0);

CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    available_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until INTEGER,
    parked_at INTEGER,
    last_error TEXT
);
CREATE INDEX outbox_ready ON outbox(available_at) WHERE parked_at IS NULL;

-- What is left of an erased person's spending: per month and category, how many erased people
-- contributed and how many charges fell in each amount band. No person id, no merchant, no
-- exact time or amount.
CREATE TABLE anonymous_facts (
    month TEXT NOT NULL,
    category TEXT NOT NULL,
    contributors INTEGER NOT NULL,
    band_under_10 INTEGER NOT NULL,
    band_10_to_50 INTEGER NOT NULL,
    band_50_to_100 INTEGER NOT NULL,
    band_100_to_500 INTEGER NOT NULL,
    band_500_up INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (month, category)
);

-- The tamper-evident audit log: each entry is hash-chained to the one before; checkpoints sign
-- the chain head. Entries hold pseudonymous ids only, never personal data.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
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
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
