//! A fresh PostgreSQL database per test, dropped afterwards. When PostgreSQL cannot be reached
//! the PostgreSQL tests skip, unless `CI=true` or `EXAMPLEBANK_TEST_REQUIRE_POSTGRES=1`, where they
//! fail: CI must never pass by skipping.

use sqlx::{Connection, Executor};

pub fn postgres_url() -> String {
    std::env::var("EXAMPLEBANK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn postgres_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| v == "true" || v == "1")
            .unwrap_or(false)
    };
    set("CI") || set("EXAMPLEBANK_TEST_REQUIRE_POSTGRES")
}

pub struct TempDatabase {
    pub url: String,
    name: String,
}

impl TempDatabase {
    /// Creates a new empty database, or `None` (skip) when PostgreSQL is unreachable and not
    /// required. Panics when it is required and unreachable.
    pub async fn create() -> Option<Self> {
        let admin_url = postgres_url();
        let mut admin = match sqlx::postgres::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(err) if !postgres_required() => {
                eprintln!("SKIPPED: PostgreSQL is not reachable at {admin_url} ({err}); set CI=true to make this a failure");
                return None;
            }
            Err(err) => {
                panic!("PostgreSQL is required (CI=true) but not reachable at {admin_url}: {err}")
            }
        };
        let name = format!("eb_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("EXAMPLEBANK_TEST_POSTGRES_URL must end in /<database>"),
        };
        Some(Self { url, name })
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with its own small runtime.
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(&postgres_url()).await
                {
                    let _ = admin
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}
