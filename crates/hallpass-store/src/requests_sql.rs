//! Statements over `requests` whose plan decides how a server with a
//! million active grants starts and lists: counting overdue grants, and
//! listing the grants that hold access. SQLite keeps no
//! statistics here, so its planner judges an index by its shape: an
//! equality on `state` looks selective, yet with a million active grants
//! `state = 'active'` is nearly every row. Each statement is written so
//! that its plan reads only the rows it needs; the tests below hold them
//! to it with `EXPLAIN QUERY PLAN`.

use hallpass_core::RequestState;

use crate::sql::{Dialect, SqlValue};
use crate::{RequestFilter, format_time};

/// The states of a grant that may still hold access.
const HOLDING: [RequestState; 2] = [RequestState::Active, RequestState::RevokeFailed];

/// Drops every claim.
pub(crate) const RELEASE_ALL_CLAIMS: &str = "DELETE FROM claims";

/// Grants holding access whose deadline is at or before `$1`. Through the
/// deadline index, which holds only what falls due by then: SQLite would
/// otherwise take `state IN (...)` on `requests_by_state` and read every
/// active grant (0.5 s with a million).
pub(crate) fn count_overdue(dialect: Dialect) -> String {
    format!(
        "SELECT COUNT(*) FROM requests{} WHERE next_deadline IS NOT NULL AND next_deadline <= $1 AND {}",
        dialect.indexed_by("requests_by_deadline"),
        state_in(&HOLDING)
    )
}

/// `filter`'s page of requests, newest first, with its parameters.
///
/// Grants holding access in any state are listed as one branch per state,
/// merged: each branch walks `requests_by_state` (state, created_at) in
/// order and stops at the page's end. `state IN (...)` in one query would
/// take every holding grant from that index and sort them all for a page
/// (0.8 s for `GET /v1/grants?active=true&limit=1` among a million).
pub(crate) fn list(filter: &RequestFilter) -> (String, Vec<SqlValue>) {
    let mut params = Vec::new();
    let conditions = conditions(filter, &mut params);
    let limit = if filter.limit == 0 { 1000 } else { filter.limit };
    let order = format!("ORDER BY created_at DESC, id DESC LIMIT {limit}");
    if !filter.holding_access {
        return (
            format!("SELECT record, version FROM requests WHERE {conditions} {order}"),
            params,
        );
    }
    if filter.state.is_some() {
        // One state already: the branch is the query.
        let sql = format!(
            "SELECT record, version FROM requests WHERE {conditions} AND {} {order}",
            state_in(&HOLDING)
        );
        return (sql, params);
    }
    let branches: Vec<String> = HOLDING
        .iter()
        .enumerate()
        .map(|(index, state)| {
            format!(
                "SELECT record, version, created_at, id FROM (SELECT record, version, created_at, id FROM requests \
                 WHERE {conditions} AND state = '{}' {order}) AS holding_{index}",
                state.as_str()
            )
        })
        .collect();
    (format!("{} {order}", branches.join(" UNION ALL ")), params)
}

/// The filter's conditions but `holding_access`, ANDed (`1 = 1` for none).
fn conditions(filter: &RequestFilter, params: &mut Vec<SqlValue>) -> String {
    let mut sql = String::from("1 = 1");
    if let Some(state) = filter.state {
        params.push(state.as_str().into());
        sql.push_str(&format!(" AND state = ${}", params.len()));
    }
    if let Some(requester) = &filter.requester {
        params.push(requester.into());
        sql.push_str(&format!(" AND requester = ${}", params.len()));
    }
    if filter.grants_only {
        sql.push_str(" AND activated = 1");
    }
    match filter.review_open {
        Some(true) => sql.push_str(" AND review = 1"),
        Some(false) => sql.push_str(" AND review > 0"),
        None => {}
    }
    if let Some((created_at, id)) = &filter.before {
        params.push(format_time(*created_at).into());
        params.push(id.into());
        let (at, id) = (params.len() - 1, params.len());
        sql.push_str(&format!(
            " AND (created_at < ${at} OR (created_at = ${at} AND id < ${id}))"
        ));
    }
    sql
}

fn state_in(states: &[RequestState]) -> String {
    let quoted: Vec<String> = states.iter().map(|state| format!("'{}'", state.as_str())).collect();
    format!("state IN ({})", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    //! Plans on SQLite's schema as the migrations leave it, without
    //! statistics, as a server runs it.

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::sql::Conn;
    use crate::{schema, sqlite};

    fn migrated() -> (tempfile::TempDir, sqlite::SqliteConn) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = sqlite::prepare_file(dir.path()).expect("file");
        let mut conn = sqlite::open_writer(&path).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        (dir, conn)
    }

    /// `EXPLAIN QUERY PLAN` of `sql`: its lines, in order.
    fn plan(conn: &mut sqlite::SqliteConn, sql: &str, params: &[SqlValue]) -> Vec<String> {
        let rows = conn.query(&format!("EXPLAIN QUERY PLAN {sql}"), params).expect("plan");
        rows.iter().map(|row| row.text(3).expect("detail")).collect()
    }

    /// A line reading `requests` followed by a sort of everything it read
    /// (`USE TEMP B-TREE FOR ORDER BY`, not the cheap `... LAST TERM OF
    /// ORDER BY` for ties): the plan of a page that reads all matching rows.
    fn sorts_every_row(plan: &[String]) -> bool {
        plan.windows(2)
            .any(|pair| pair[0].contains(" requests ") && pair[1] == "USE TEMP B-TREE FOR ORDER BY")
    }

    #[test]
    fn counting_overdue_grants_reads_the_deadline_index() {
        let (_dir, mut conn) = migrated();
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let lines = plan(&mut conn, &count_overdue(Dialect::Sqlite), &[format_time(at).into()]);
        assert!(
            lines
                .iter()
                .any(|line| line.contains("USING INDEX requests_by_deadline (")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_page_of_grants_holding_access_sorts_no_more_than_a_page() {
        let (_dir, mut conn) = migrated();
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let filters = [
            RequestFilter {
                grants_only: true,
                holding_access: true,
                limit: 1,
                ..RequestFilter::default()
            },
            RequestFilter {
                grants_only: true,
                holding_access: true,
                before: Some((at, "r1".into())),
                limit: 200,
                ..RequestFilter::default()
            },
            RequestFilter {
                requester: Some("alice".into()),
                holding_access: true,
                limit: 200,
                ..RequestFilter::default()
            },
        ];
        for filter in filters {
            let (sql, params) = list(&filter);
            let lines = plan(&mut conn, &sql, &params);
            assert!(!sorts_every_row(&lines), "{filter:?}: {lines:?}");
            assert!(
                lines
                    .iter()
                    .filter(|line| line.contains(" requests "))
                    .all(|line| line.contains("USING INDEX requests_by_state (state=?")),
                "{filter:?}: {lines:?}"
            );
        }
    }
}
