//! The vocabulary of examplebank: values that can only exist when valid.
//!
//! Everything here parses untrusted input into types whose existence proves validity
//! (`Amount::parse`, `Category::parse`, ...). No I/O lives here.

pub mod amount;
pub mod category;
pub mod clock;
pub mod cursor;
pub mod person;
pub mod purpose;
pub mod scope;

pub use amount::{Amount, AmountError, CARD_LIMIT_MINOR};
pub use category::Category;
pub use clock::{Clock, SystemClock};
pub use cursor::{Cursor, PageLimit};
pub use person::{Email, Password, PersonName, TransactionName, Username};
pub use purpose::Purpose;
pub use scope::{Scope, Scopes};

/// The most transactions one reward write-back through the transactions API
/// (`POST /bank/v1/transactions/rewards`) may carry: the route refuses more, and the rewards
/// worker in split mode claims no more than this at once.
pub const MAX_REWARD_BATCH: usize = 100;

/// An input that could not be parsed into a domain value. The message is safe to show to the
/// caller: it never repeats the rejected value, which may be personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}
