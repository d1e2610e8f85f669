//! Grants (active or ended access): `grants`, `revoke`, `release`.

use std::process::ExitCode;

use hallpass_api::{AccessRequest, RequestState};

use super::requests::{print_updated, request_table};
use super::{CmdResult, Ctx, ok};
use crate::output::{eprint_message, print_json};

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
    ended(ctx, &request)
}

/// Gives up your own access before it expires.
pub async fn release(ctx: &Ctx, id: &str) -> CmdResult {
    let request = ctx.client()?.release(id).await?;
    ended(ctx, &request)
}

/// Prints the grant after a revoke or release. When the target could not
/// revoke it, the access may still work: that is a failure (exit 1), said
/// on stderr, even though the server keeps retrying.
fn ended(ctx: &Ctx, request: &AccessRequest) -> CmdResult {
    print_updated(ctx, request)?;
    if request.state != RequestState::RevokeFailed {
        return ok();
    }
    eprint_message(&format!(
        "error: revoking access under request {} on target {} failed, so it may still work; \
         Hallpass retries with backoff (see `hallpass grants`)",
        request.id, request.target
    ));
    Ok(ExitCode::FAILURE)
}
