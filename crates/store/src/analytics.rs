//! Aggregates for administrators: spending per month and category, never per person. Live
//! data counts only people who consented to analytics and have not restricted processing;
//! erased people count through their anonymous facts. Cells with fewer than k contributors are
//! suppressed by the caller.

use crate::{get_i64, get_string};
use crate::{Result, Store};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsCell {
    pub month: String,
    pub category: String,
    pub contributors: i64,
    /// Charges per amount band: under 10, 10–50, 50–100, 100–500, 500 up.
    pub bands: [i64; 5],
}

const BAND_COLUMNS: [&str; 5] = [
    "band_under_10",
    "band_10_to_50",
    "band_50_to_100",
    "band_100_to_500",
    "band_500_up",
];

impl Store {
    pub async fn analytics_cells(&self) -> Result<Vec<AnalyticsCell>> {
        let [b1, b2, b3, b4] = crate::erasure::BAND_LIMITS;
        let live_sql = format!(
            "SELECT t.month, t.category, COUNT(DISTINCT t.user_id) AS contributors, \
             CAST(SUM(CASE WHEN t.amount_minor < {b1} THEN 1 ELSE 0 END) AS BIGINT) AS band_under_10, \
             CAST(SUM(CASE WHEN t.amount_minor >= {b1} AND t.amount_minor < {b2} THEN 1 ELSE 0 END) AS BIGINT) AS band_10_to_50, \
             CAST(SUM(CASE WHEN t.amount_minor >= {b2} AND t.amount_minor < {b3} THEN 1 ELSE 0 END) AS BIGINT) AS band_50_to_100, \
             CAST(SUM(CASE WHEN t.amount_minor >= {b3} AND t.amount_minor < {b4} THEN 1 ELSE 0 END) AS BIGINT) AS band_100_to_500, \
             CAST(SUM(CASE WHEN t.amount_minor >= {b4} THEN 1 ELSE 0 END) AS BIGINT) AS band_500_up \
             FROM transactions t JOIN bank_users u ON u.id = t.user_id \
             WHERE u.consent_analytics = 1 AND u.restricted_at IS NULL AND u.erasure_requested_at IS NULL \
             GROUP BY t.month, t.category"
        );
        let live = sqlx::query(&live_sql).fetch_all(&self.reader).await?;
        let facts = sqlx::query("SELECT * FROM anonymous_facts")
            .fetch_all(&self.reader)
            .await?;
        let mut cells: BTreeMap<(String, String), AnalyticsCell> = BTreeMap::new();
        for row in live.iter().chain(facts.iter()) {
            let month = get_string(row, "month")?;
            let category = get_string(row, "category")?;
            let cell = cells
                .entry((month.clone(), category.clone()))
                .or_insert_with(|| AnalyticsCell {
                    month,
                    category,
                    contributors: 0,
                    bands: [0; 5],
                });
            // Live people and erased people are disjoint, so their counts add up.
            cell.contributors += get_i64(row, "contributors")?;
            for (slot, column) in cell.bands.iter_mut().zip(BAND_COLUMNS) {
                *slot += get_i64(row, column)?;
            }
        }
        Ok(cells.into_values().collect())
    }

    /// Deletes anonymous facts last updated before `cutoff` (retention).
    pub async fn delete_facts_before(&self, cutoff: i64) -> Result<u64> {
        let result = sqlx::query("DELETE FROM anonymous_facts WHERE updated_at < $1")
            .bind(cutoff)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
    }

    /// Deletes completed requests finished before `cutoff` (retention).
    pub async fn delete_requests_before(&self, cutoff: i64) -> Result<u64> {
        let result = sqlx::query(
            "DELETE FROM privacy_requests WHERE status = 'completed' AND completed_at < $1",
        )
        .bind(cutoff)
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected())
    }

    /// The person's points ledger, oldest first: `(delta, kind, reference, at)`.
    pub async fn points_ledger(&self, user_id: &str) -> Result<Vec<(i64, String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT delta, kind, reference, at FROM points_ledger WHERE user_id = $1 ORDER BY seq",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    get_i64(row, "delta")?,
                    get_string(row, "kind")?,
                    get_string(row, "reference")?,
                    get_i64(row, "at")?,
                ))
            })
            .collect()
    }
}
