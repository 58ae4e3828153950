//! Test support: [`TestApp`] runs the whole system in process on a fresh database of either
//! backend (a temporary SQLite file, or a new PostgreSQL database per test) with its own key
//! store, and speaks to it through the real router, exactly as HTTP clients do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod postgres;

pub use app::{Person, TestApp, TestResponse, Tokens};
pub use postgres::{postgres_required, postgres_url, TempDatabase};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn name(app: TestApp)` as two tests, one per backend:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::TestApp::new($crate::Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::TestApp::new($crate::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}
