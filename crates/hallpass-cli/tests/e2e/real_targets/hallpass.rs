//! `hallpass` targets: a grant is an API token with the role's groups,
//! working until the grant ends; a revoke makes the server refuse it at
//! once and is verified; an extension moves its expiry; a lock of the
//! principal ends it with the grant.

use super::World;

/// The token of the world's grant: who it says the caller is.
fn whoami(world: &World, token: &str) -> serde_json::Value {
    world.server.json(token, &["whoami"])
}

/// Asserts that a token ends when its grant does: the store keeps
/// microseconds, so at most 1 µs before, never after.
fn assert_ends_with_grant(token: &serde_json::Value, request: &serde_json::Value) {
    let time = |value: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339")
    };
    let (token_end, grant_end) = (time(&token["token_expires_at"]), time(&request["expires_at"]));
    let early = grant_end - token_end;
    assert!(
        early >= chrono::Duration::zero() && early < chrono::Duration::microseconds(1),
        "token ends {token_end}, grant {grant_end}"
    );
}

#[test]
fn a_grant_is_an_api_token_with_the_roles_groups_until_it_is_revoked() {
    let world = World::new("hpt");
    world.apply("  type = \"hallpass\"", "{ groups = [\"admins\", \"auditors\"] }");
    let grant = world.request();
    let token = grant.env["HALLPASS_TOKEN"].clone();
    let me = whoami(&world, &token);
    assert_eq!(me["admin"], true, "{me}");
    assert_eq!(me["groups"], serde_json::json!(["admins", "auditors"]));
    assert_eq!(me["principal"], format!("{}@example.com", world.name));
    // Its expiry is the grant's, and it shows with the other tokens.
    let request = world.server.json(&world.server.admin, &["show", &grant.id]);
    assert_ends_with_grant(&me, &request);
    let tokens = world.server.json(&world.server.admin, &["token", "list"]);
    assert!(
        tokens
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["id"] == me["token_id"] && t["created_by"] == "hallpass"),
        "{tokens}"
    );
    // Issuing is idempotent: the credential is the same token each time.
    let again = world
        .server
        .json(&world.token, &["credentials", &grant.id, "--format", "json"]);
    assert_eq!(again["token"], token.as_str());
    world.assert_not_stored(&token);

    world.revoke_verified(&grant.id);
    let (code, refused) = world.server.fails(&token, &["whoami"]);
    assert_eq!(code, 1);
    assert!(refused.contains("unknown, revoked or expired"), "{refused}");
    let revoked = world.end_event(&grant.id, "token.revoked");
    assert_eq!(revoked["data"]["token_id"], me["token_id"]);
}

#[test]
fn an_extension_moves_the_tokens_expiry_and_a_lock_ends_it() {
    let world = World::new("hpx");
    world.apply("  type = \"hallpass\"", "{ groups = [\"ops\"] }");
    let grant = world.request();
    let token = grant.env["HALLPASS_TOKEN"].clone();
    let before = whoami(&world, &token)["token_expires_at"].clone();
    let extended = world.server.run(
        &world.token,
        &["extend", &grant.id, "--by", "10m", "--reason", "longer"],
    );
    assert!(
        extended.status.success(),
        "{}",
        String::from_utf8_lossy(&extended.stderr)
    );
    let request = world.server.json(&world.server.admin, &["show", &grant.id]);
    let after = whoami(&world, &token);
    assert_ne!(after["token_expires_at"], before);
    assert_ends_with_grant(&after, &request);
    world.end_event(&grant.id, "token.extended");

    let principal = format!("{}@example.com", world.name);
    let locked = world.server.run(
        &world.server.admin,
        &["lock", &principal, "--reason", "left the company"],
    );
    assert!(locked.status.success(), "{}", String::from_utf8_lossy(&locked.stderr));
    let (code, _) = world.server.fails(&token, &["whoami"]);
    assert_eq!(code, 1);
    let ended = world.server.json(&world.server.admin, &["show", &grant.id]);
    assert_eq!(ended["state"], "revoked", "{ended}");
}

#[test]
fn bad_grant_blocks_are_refused_at_apply() {
    let world = World::new("hpbad");
    let config = format!(
        "target \"{0}\" {{\n  type = \"hallpass\"\n}}\nrole \"{0}\" {{\n  target = \"{0}\"\n  max_duration = \"1h\"\n  \
         requestable_by = [\"group:dev\"]\n  auto_approve = true\n  grant = {{ groups = [\"no spaces\"] }}\n}}\n",
        world.name
    );
    let file = world.dir.path().join("bad.hcl");
    std::fs::write(&file, config).expect("write");
    let (code, stderr) = world
        .server
        .fails(&world.server.admin, &["apply", "-f", &file.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("group \"no spaces\" is not valid"), "{stderr}");
}
