//! Grants (active or ended access): `grants`, `revoke`, `release`.

use super::requests::{print_updated, request_table};
use super::{CmdResult, Ctx, ok};
use crate::output::print_json;

pub async fn list(ctx: &Ctx, active_only: bool, limit: usize) -> CmdResult {
    let query = hallpass_client::ListQuery {
        active: active_only,
        page_size: limit.min(hallpass_client::MAX_PAGE),
        max: limit,
        ..hallpass_client::ListQuery::default()
    };
    let grants = ctx.client()?.list(true, &query).await?;
    if ctx.json() {
        print_json(&grants)?;
    } else {
        request_table(&grants).print_or(if active_only { "no active grants" } else { "no grants" });
    }
    ok()
}

/// Ends someone's access early (approvers and admins).
pub async fn revoke(ctx: &Ctx, id: &str, reason: String) -> CmdResult {
    let request = ctx.client()?.revoke(id, reason).await?;
    print_updated(ctx, &request)?;
    ok()
}

/// Gives up your own access before it expires.
pub async fn release(ctx: &Ctx, id: &str) -> CmdResult {
    let request = ctx.client()?.release(id).await?;
    print_updated(ctx, &request)?;
    ok()
}
