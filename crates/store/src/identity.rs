//! Accounts, authorisation codes and refresh-token families (the identity role's tables).

use crate::{affected, get_i64, get_opt_bytes, get_opt_i64, get_opt_string, get_string};
use crate::{Result, Store, StoreError};
use sqlx::any::AnyRow;

/// A new account. Personal fields arrive already encrypted; the store never sees plaintext.
pub struct NewAccount {
    pub id: String,
    pub username_index: Vec<u8>,
    pub username_enc: Vec<u8>,
    pub given_name_enc: Option<Vec<u8>>,
    pub family_name_enc: Option<Vec<u8>>,
    pub email_enc: Option<Vec<u8>>,
    pub password_hash: String,
    pub role: &'static str,
    pub now: i64,
}

/// What a login needs to know about an account.
#[derive(Debug, Clone)]
pub struct AccountAuth {
    pub id: String,
    pub password_hash: String,
    pub role: String,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub id: String,
    pub username_enc: Vec<u8>,
    pub given_name_enc: Option<Vec<u8>>,
    pub family_name_enc: Option<Vec<u8>>,
    pub email_enc: Option<Vec<u8>>,
    pub password_hash: String,
    pub role: String,
    pub status: String,
    pub created_at: i64,
}

pub struct NewAuthCode {
    pub code_hash: String,
    pub client_id: String,
    pub account_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub expires_at: i64,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub account_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub expires_at: i64,
}

#[derive(Debug)]
pub enum CodeExchange {
    /// First use of a live code that passed the checks: its session has started.
    Exchanged(CodeGrant),
    /// First use, but the checks failed: the code is used up and no session started.
    Refused,
    /// The code was used before: the session it started has been revoked.
    Replayed,
    Unknown,
}

/// What the session started by a code exchange will be.
#[derive(Clone, Copy)]
pub struct SessionSeed<'a> {
    pub family_id: &'a str,
    pub refresh_hash: &'a str,
    pub refresh_expires_at: i64,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct RotatedRefresh {
    pub family_id: String,
    pub account_id: String,
    pub client_id: String,
    pub scope: String,
}

#[derive(Debug)]
pub enum RotationOutcome {
    Rotated(RotatedRefresh),
    /// A used or revoked token came back: the whole family is now revoked.
    ReuseDetected,
    Invalid,
}

/// A login session: a refresh-token family and its first token.
#[derive(Clone, Copy)]
struct NewSession<'a> {
    pub family_id: &'a str,
    pub account_id: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    /// The authorisation code the session came from, so a replayed code can revoke it.
    pub code_hash: Option<&'a str>,
    pub refresh_hash: &'a str,
    pub refresh_expires_at: i64,
    pub now: i64,
}

/// What a token check needs: is the account there and active, is the session alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Gone,
}

fn account_from(row: &AnyRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        id: get_string(row, "id")?,
        username_enc: get_opt_bytes(row, "username_enc")?.unwrap_or_default(),
        given_name_enc: get_opt_bytes(row, "given_name_enc")?,
        family_name_enc: get_opt_bytes(row, "family_name_enc")?,
        email_enc: get_opt_bytes(row, "email_enc")?,
        password_hash: get_string(row, "password_hash")?,
        role: get_string(row, "role")?,
        status: get_string(row, "status")?,
        created_at: get_i64(row, "created_at")?,
    })
}

impl Store {
    pub async fn create_account(&self, account: &NewAccount) -> Result<()> {
        sqlx::query(
            "INSERT INTO accounts (id, username_index, username_enc, given_name_enc, \
             family_name_enc, email_enc, password_hash, role, status, password_changed_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9)",
        )
        .bind(&account.id)
        .bind(&account.username_index)
        .bind(&account.username_enc)
        .bind(&account.given_name_enc)
        .bind(&account.family_name_enc)
        .bind(&account.email_enc)
        .bind(&account.password_hash)
        .bind(account.role)
        .bind(account.now)
        .execute(&self.writer)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn account_by_username_index(&self, index: &[u8]) -> Result<Option<AccountAuth>> {
        let row = sqlx::query(
            "SELECT id, password_hash, role, status FROM accounts WHERE username_index = $1",
        )
        .bind(index)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(AccountAuth {
                id: get_string(&row, "id")?,
                password_hash: get_string(&row, "password_hash")?,
                role: get_string(&row, "role")?,
                status: get_string(&row, "status")?,
            })
        })
        .transpose()
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(account_from).transpose()
    }

    /// Replaces the profile fields (already encrypted) of an account.
    pub async fn update_account_profile(
        &self,
        id: &str,
        given_name_enc: &[u8],
        family_name_enc: &[u8],
        email_enc: &[u8],
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE accounts SET given_name_enc = $2, family_name_enc = $3, email_enc = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(given_name_enc)
        .bind(family_name_enc)
        .bind(email_enc)
        .execute(&self.writer)
        .await?;
        Ok(affected(&result) == 1)
    }

    /// Sets a new password hash and revokes every session issued before it (case C11).
    pub async fn change_password(&self, id: &str, password_hash: &str, now: i64) -> Result<()> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        sqlx::query(
            "UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Codes not yet exchanged die too: they were granted under the old password.
        sqlx::query("UPDATE auth_codes SET used_at = $2 WHERE account_id = $1 AND used_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE token_families SET revoked_at = $2, revoked_reason = 'password_changed' \
             WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_auth_code(&self, code: &NewAuthCode) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, account_id, redirect_uri, scope, \
             code_challenge, nonce, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(&code.account_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(&code.code_challenge)
        .bind(&code.nonce)
        .bind(code.expires_at)
        .bind(code.now)
        .execute(&self.writer)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// Uses a code, once, and starts its session in the same database transaction, so a
    /// replay racing the first use always finds the session to revoke. `accept` checks the
    /// grant (client, redirect, expiry, PKCE); a refused code stays used. A code whose account
    /// is no longer active is refused here, before `accept`.
    pub async fn exchange_code(
        &self,
        code_hash: &str,
        seed: &SessionSeed<'_>,
        accept: impl FnOnce(&CodeGrant) -> bool,
    ) -> Result<CodeExchange> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        let row = sqlx::query(
            "UPDATE auth_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL \
             RETURNING client_id, account_id, redirect_uri, scope, code_challenge, nonce, expires_at, \
             (SELECT a.status FROM accounts a WHERE a.id = auth_codes.account_id) AS account_status",
        )
        .bind(code_hash)
        .bind(seed.now)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match row {
            Some(row) => {
                let grant = CodeGrant {
                    client_id: get_string(&row, "client_id")?,
                    account_id: get_string(&row, "account_id")?,
                    redirect_uri: get_string(&row, "redirect_uri")?,
                    scope: get_string(&row, "scope")?,
                    code_challenge: get_string(&row, "code_challenge")?,
                    nonce: get_opt_string(&row, "nonce")?,
                    expires_at: get_i64(&row, "expires_at")?,
                };
                // An account disabled (or erased) between the login and the exchange gets no
                // tokens; the code is used up either way.
                let active = get_opt_string(&row, "account_status")?.as_deref() == Some("active");
                if active && accept(&grant) {
                    let session = NewSession {
                        family_id: seed.family_id,
                        account_id: &grant.account_id,
                        client_id: &grant.client_id,
                        scope: &grant.scope,
                        code_hash: Some(code_hash),
                        refresh_hash: seed.refresh_hash,
                        refresh_expires_at: seed.refresh_expires_at,
                        now: seed.now,
                    };
                    start_session_in(&mut tx, &session).await?;
                    CodeExchange::Exchanged(grant)
                } else {
                    CodeExchange::Refused
                }
            }
            None => {
                let used = sqlx::query("SELECT family_id FROM auth_codes WHERE code_hash = $1")
                    .bind(code_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                match used {
                    None => CodeExchange::Unknown,
                    Some(row) => {
                        if let Some(family) = get_opt_string(&row, "family_id")? {
                            revoke_family_in(&mut tx, &family, "code_replayed", seed.now).await?;
                        }
                        CodeExchange::Replayed
                    }
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Exchanges a refresh token for a new one in the same family, exactly once. Any later
    /// presentation of the old token revokes the family, including the token that replaced it.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<RotationOutcome> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        let row = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND expires_at > $2 RETURNING family_id",
        )
        .bind(old_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let known =
                sqlx::query("SELECT family_id, used_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(old_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let outcome = match known {
                Some(row) if get_opt_i64(&row, "used_at")?.is_some() => {
                    let family = get_string(&row, "family_id")?;
                    revoke_family_in(&mut tx, &family, "refresh_reused", now).await?;
                    RotationOutcome::ReuseDetected
                }
                _ => RotationOutcome::Invalid,
            };
            tx.commit().await?;
            return Ok(outcome);
        };
        let family_id = get_string(&row, "family_id")?;
        let family = sqlx::query(
            "SELECT f.account_id, f.client_id, f.scope FROM token_families f \
             JOIN accounts a ON a.id = f.account_id \
             WHERE f.id = $1 AND f.revoked_at IS NULL AND a.status = 'active'",
        )
        .bind(&family_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(family) = family else {
            tx.commit().await?;
            return Ok(RotationOutcome::Invalid);
        };
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(new_hash)
        .bind(&family_id)
        .bind(now)
        .bind(new_expires_at)
        .execute(&mut *tx)
        .await?;
        let rotated = RotatedRefresh {
            family_id,
            account_id: get_string(&family, "account_id")?,
            client_id: get_string(&family, "client_id")?,
            scope: get_string(&family, "scope")?,
        };
        tx.commit().await?;
        Ok(RotationOutcome::Rotated(rotated))
    }

    /// Revokes the family a refresh token belongs to (RFC 7009). Unknown tokens are ignored.
    pub async fn revoke_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE token_families SET revoked_at = $3, revoked_reason = 'revoked' \
             WHERE revoked_at IS NULL AND client_id = $2 AND id IN \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
        )
        .bind(token_hash)
        .bind(client_id)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(affected(&result) > 0)
    }

    pub async fn revoke_session(&self, family_id: &str, reason: &str, now: i64) -> Result<()> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        revoke_family_in(&mut tx, family_id, reason, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One indexed look-up per authenticated request: the account must exist and be active,
    /// and the session (when the token names one) must not be revoked.
    pub async fn session_state(
        &self,
        account_id: &str,
        family_id: Option<&str>,
    ) -> Result<SessionState> {
        let row = sqlx::query(
            "SELECT a.status, (SELECT f.revoked_at FROM token_families f WHERE f.id = $2 \
             AND f.account_id = a.id) AS revoked_at, \
             (SELECT COUNT(*) FROM token_families f WHERE f.id = $2 AND f.account_id = a.id) AS known \
             FROM accounts a WHERE a.id = $1",
        )
        .bind(account_id)
        .bind(family_id.unwrap_or(""))
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else {
            return Ok(SessionState::Gone);
        };
        let active = get_string(&row, "status")? == "active";
        let session_ok = match family_id {
            None => true,
            Some(_) => get_i64(&row, "known")? == 1 && get_opt_i64(&row, "revoked_at")?.is_none(),
        };
        Ok(if active && session_ok {
            SessionState::Active
        } else {
            SessionState::Gone
        })
    }

    pub async fn set_account_status(&self, id: &str, status: &str) -> Result<bool> {
        let result = sqlx::query("UPDATE accounts SET status = $2 WHERE id = $1")
            .bind(id)
            .bind(status)
            .execute(&self.writer)
            .await?;
        Ok(affected(&result) == 1)
    }
}

async fn revoke_family_in(
    tx: &mut crate::tx::Tx,
    family_id: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(now)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Starts a refresh-token family (one login session) with its first token.
async fn start_session_in(tx: &mut crate::tx::Tx, session: &NewSession<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO token_families (id, account_id, client_id, scope, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session.family_id)
    .bind(session.account_id)
    .bind(session.client_id)
    .bind(session.scope)
    .bind(session.now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_write)?;
    if let Some(code_hash) = session.code_hash {
        sqlx::query("UPDATE auth_codes SET family_id = $2 WHERE code_hash = $1")
            .bind(code_hash)
            .bind(session.family_id)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(session.refresh_hash)
    .bind(session.family_id)
    .bind(session.now)
    .bind(session.refresh_expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
