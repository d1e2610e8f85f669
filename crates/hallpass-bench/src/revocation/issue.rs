//! Creating the scenario's grants: for each, a request by its own
//! principal, its credential, and what is opened with that credential.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hallpass_api::{CreateRequest, RequestState};
use hallpass_client::Client;

use super::Login;
use super::cli::CliSession;
use super::service::{Service, Session};

/// Distinct failure messages a report keeps.
const ERROR_SAMPLES: usize = 5;

/// A grant as created, with what was opened with its credential.
pub struct Issued {
    pub id: String,
    pub principal: usize,
    pub expires_at: DateTime<Utc>,
    pub login: Login,
    pub session: Option<Session>,
    pub cli: Option<CliSession>,
    pub request: Duration,
    pub credentials: Duration,
    pub session_open: Option<Duration>,
}

/// What creating grants needs.
pub struct Setup<'a> {
    pub service: &'a Service,
    pub admin: Client,
    /// One token per principal, by principal number.
    pub tokens: Vec<String>,
    pub role: String,
}

impl Setup<'_> {
    /// A request for the scenario's role, for `duration`.
    pub fn request(&self, duration: String, reason: &str) -> CreateRequest {
        CreateRequest {
            role: self.role.clone(),
            duration: Some(duration),
            reason: reason.into(),
            ticket: None,
            emergency: false,
            scheduled_start: None,
            ssh_public_key: None,
            plan: None,
        }
    }

    /// The API client of benchmark principal `principal`.
    pub fn client(&self, principal: usize) -> Result<Client> {
        let token = self
            .tokens
            .get(principal)
            .with_context(|| format!("no benchmark principal {principal}"))?;
        Ok(self.admin.with_token(token.clone()))
    }

    /// Requests a grant for `principal` for `seconds()` (evaluated just
    /// before the request), fetches its credential and opens what is asked
    /// for with it.
    pub async fn issue(
        &self,
        principal: usize,
        seconds: &(dyn Fn() -> u64 + Sync),
        session: bool,
        cli: bool,
    ) -> Result<Issued> {
        let client = self.client(principal)?;
        let body = self.request(format!("{}s", seconds()), "hallpass-bench revocation");
        let started = Instant::now();
        let grant = client.create_request(&body).await.context("POST /v1/requests")?.request;
        let request = started.elapsed();
        let (RequestState::Active, Some(expires_at)) = (grant.state, grant.expires_at) else {
            bail!("request {} is {} instead of active", grant.id, grant.state);
        };
        let started = Instant::now();
        let credential = client
            .credentials(&grant.id)
            .await
            .with_context(|| format!("GET /v1/requests/{}/credentials", grant.id))?;
        let credentials = started.elapsed();
        let login = self.service.login(&credential)?;
        let (session, session_open) = if session {
            let started = Instant::now();
            let opened = self
                .service
                .open(&login)
                .await
                .with_context(|| format!("cannot open a session with the credential of {}", grant.id))?;
            (Some(opened), Some(started.elapsed()))
        } else {
            (None, None)
        };
        let cli = if cli {
            Some(CliSession::open(self.service.kind(), &login).await?)
        } else {
            None
        };
        Ok(Issued {
            id: grant.id,
            principal,
            expires_at,
            login,
            session,
            cli,
            request,
            credentials,
            session_open,
        })
    }

    /// `issue` for principals `first..first + count`, `clients` at a time;
    /// the grants in principal order, and the failures.
    pub async fn issue_many(
        &self,
        first: usize,
        count: usize,
        clients: usize,
        seconds: &(dyn Fn(usize) -> u64 + Sync),
        session: &(dyn Fn(usize) -> bool + Sync),
        cli: &(dyn Fn(usize) -> bool + Sync),
    ) -> (Vec<Issued>, Vec<String>) {
        let results: Vec<(usize, Result<Issued>)> = futures::stream::iter(0..count)
            .map(|i| async move {
                let result = self.issue(first + i, &|| seconds(i), session(i), cli(i)).await;
                (i, result)
            })
            .buffer_unordered(clients.max(1))
            .collect()
            .await;
        let mut results = results;
        results.sort_by_key(|(i, _)| *i);
        let mut issued = Vec::with_capacity(count);
        let mut failures = Vec::new();
        for (_, result) in results {
            match result {
                Ok(grant) => issued.push(grant),
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        (issued, failures)
    }
}

/// The first few distinct failures, for a report.
pub fn samples(failures: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for failure in failures {
        if out.len() < ERROR_SAMPLES && !out.contains(failure) {
            out.push(failure.clone());
        }
    }
    out
}
