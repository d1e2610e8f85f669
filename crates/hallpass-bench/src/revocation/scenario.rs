//! One target type's run, phase by phase: the target, role and principals;
//! a calibration; the grants aimed at one window; watching their access
//! end; then the audit events, the KRL revokes (ssh) and the baseline
//! (postgres).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use hallpass_client::Client;

use super::issue::{Issued, Setup, samples};
use super::service::Service;
use super::{IssueLatency, Kind, Options, TypeReport, baseline, krl, recorded, watch};
use crate::server::Deployment;
use crate::stats::{Latencies, Summary};
use crate::throughput::{apply_roles, auto_approved_role, create_principals};

/// Grants of the calibration run: N/20 within these bounds.
pub const CALIBRATION: (usize, usize) = (5, 50);
/// Creation time estimate × this, plus the margin, places the window.
const SAFETY_FACTOR: f64 = 1.5;

/// The run's principals, numbered in this order: the calibration's, the
/// measured grants', the baseline's, then the KRL revokes'. Each grant has
/// a principal of its own (one grant per principal and role).
struct Layout {
    calibration: usize,
    grants: usize,
    baseline_cycles: usize,
    krl: usize,
}

impl Layout {
    /// The parts `options` asks of `kind`: a baseline on postgres only, KRL
    /// revokes on ssh only.
    fn of(kind: Kind, options: &Options) -> Layout {
        Layout {
            calibration: (options.grants / 20).clamp(CALIBRATION.0, CALIBRATION.1),
            grants: options.grants,
            baseline_cycles: if kind == Kind::Postgres {
                options.baseline_cycles
            } else {
                0
            },
            krl: if kind == Kind::Ssh { options.krl_revokes } else { 0 },
        }
    }

    /// The first principal of the baseline's cycles.
    fn first_baseline(&self) -> usize {
        self.calibration + self.grants
    }

    /// The first principal of the KRL revokes.
    fn first_krl(&self) -> usize {
        let baseline = if self.baseline_cycles > 0 {
            self.baseline_cycles + baseline::WARMUP
        } else {
            0
        };
        self.first_baseline() + baseline
    }

    /// The principals of the whole run.
    fn principals(&self) -> usize {
        self.first_krl() + self.krl
    }
}

/// Whether grant `i` has a session kept open: every grant but on ssh,
/// where only the first `--ssh-logins` do (each is a process).
fn opens_session(kind: Kind, options: &Options, i: usize) -> bool {
    kind != Kind::Ssh || i < options.ssh_logins
}

/// Whether grant `i` is also watched with the command-line client.
fn opens_cli(kind: Kind, options: &Options, i: usize) -> bool {
    kind != Kind::Ssh && i < options.cli_sample
}

/// The scenario on one type, its service set up and its server started.
pub async fn run(deployment: &Deployment, service: &mut Service, options: &Options) -> Result<TypeReport> {
    let kind = service.kind();
    let layout = Layout::of(kind, options);
    let admin = deployment.admin(0)?;
    let target = create_target(&admin, service).await?;
    let service: &Service = service;
    let setup = create_role_and_principals(admin, service, &target, &layout).await?;
    let rate = calibrate(&setup, &layout, options).await?;
    let created = create_grants(&setup, &layout, options, rate).await?;
    let ends = watch::until_gone(deployment, service, created.grants, created.planned_start, options).await?;
    // When Hallpass recorded each end.
    let recorded = recorded::ends(deployment, &ends.ids, options.timeout).await?;
    let mut ssh = ends.ssh;
    if let (Some(report), Service::Ssh(_)) = (ssh.as_mut(), service)
        && layout.krl > 0
    {
        report.krl = Some(krl::revoke_before_expiry(&setup, layout.first_krl(), layout.krl).await?);
    }
    let baseline = match service {
        Service::Postgres(pg) if layout.baseline_cycles > 0 => {
            Some(baseline::measure(&setup, pg, layout.first_baseline(), layout.baseline_cycles).await?)
        }
        _ => None,
    };
    Ok(TypeReport {
        target_type: kind,
        grants: layout.grants,
        calibration_grants: layout.calibration,
        calibration_per_second: rate,
        planned_start: created.planned_start,
        created: ends.ids.len(),
        failures: created.failures.len(),
        failure_samples: samples(&created.failures),
        creation_seconds: created.creation_seconds,
        issue: created.issue,
        sessions_opened: ends.sessions_opened,
        session_open: created.session_open,
        sessions_live_before: ends.sessions_live_before,
        cli_sessions_opened: ends.cli_sessions_opened,
        outside_window: created.outside_window,
        passwords_checked: ends.passwords_checked,
        login_refused: Some(ends.probes.login_refused),
        login_refused_cli: ends.probes.login_refused_cli,
        login_refused_cli_grants: ends.probes.login_refused_cli_grants,
        session_ended: ends.probes.session_ended,
        session_ended_cli: ends.probes.session_ended_cli,
        session_ended_cli_grants: ends.probes.session_ended_cli_grants,
        accounts_gone: ends.accounts_gone,
        recorded: Some(recorded),
        cpu: ends.cpu,
        ssh,
        baseline,
    })
}

/// Creates the type's target; on ssh, then starts sshd with what the
/// target serves (its CA and KRL). The target's name.
async fn create_target(admin: &Client, service: &mut Service) -> Result<String> {
    let target = format!("bench-{}", service.kind());
    admin
        .put_target(&service.target(&target))
        .await
        .with_context(|| format!("cannot create target {target}"))?;
    if let Service::Ssh(ssh) = service {
        let stored = admin.get_target(&target).await.context("cannot read the ssh target")?;
        let ca = stored.ca_public_key.context("the ssh target has no ca_public_key")?;
        let krl = admin
            .target_krl(&target)
            .await
            .context("cannot fetch the target's KRL")?;
        ssh.start(&ca, &krl).await?;
    }
    Ok(target)
}

/// The auto-approved role on `target` and every principal of the run.
async fn create_role_and_principals<'a>(
    admin: Client,
    service: &'a Service,
    target: &str,
    layout: &Layout,
) -> Result<Setup<'a>> {
    let kind = service.kind();
    let role = format!("bench-revoke-{kind}");
    let description = "hallpass-bench: auto-approved grants for the revocation scenario";
    apply_roles(
        &admin,
        &[auto_approved_role(&role, target, description, "2h", service.grant())],
    )
    .await?;
    let principals = layout.principals();
    let started = Instant::now();
    let tokens = create_principals(&admin, (0..principals).map(|p| format!("rv-{kind}-{p}")).collect()).await?;
    eprintln!(
        "  setup: target {target}, role {role}, {principals} principals in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(Setup {
        service,
        admin,
        tokens,
        role,
    })
}

/// Calibration: the same work per grant as the measured grants, released
/// at once. Grants created a second.
async fn calibrate(setup: &Setup<'_>, layout: &Layout, options: &Options) -> Result<f64> {
    let (kind, n, calibration) = (setup.service.kind(), layout.grants, layout.calibration);
    eprintln!("revocation ({kind}): calibrating with {calibration} grants");
    let started = Instant::now();
    let (calibrated, failures) = setup
        .issue_many(
            0,
            calibration,
            options.clients,
            &|_| 3600,
            // As many sessions in proportion as the grants will have (ssh
            // opens few, and each is slow).
            &|i| opens_session(kind, options, i * n / calibration),
            &|_| false,
        )
        .await;
    let rate = calibrated.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    if calibrated.is_empty() {
        bail!("calibration created no grant: {}", samples(&failures).join(" | "));
    }
    release(setup, calibrated).await?;
    Ok(rate)
}

/// Closes the grants' sessions and releases the grants.
async fn release(setup: &Setup<'_>, grants: Vec<Issued>) -> Result<()> {
    for grant in grants {
        if let Some(session) = grant.session {
            session.close().await;
        }
        setup
            .client(grant.principal)?
            .release(&grant.id)
            .await
            .with_context(|| format!("cannot release calibration grant {}", grant.id))?;
    }
    Ok(())
}

/// The measured grants, as created.
struct Created {
    grants: Vec<Issued>,
    failures: Vec<String>,
    /// When the first grant was planned to expire.
    planned_start: DateTime<Utc>,
    creation_seconds: f64,
    outside_window: usize,
    issue: IssueLatency,
    session_open: Summary,
}

/// The measured grants, with sessions open, whose whole-second durations
/// aim them all at one window placed after creation ends (estimated from
/// the calibrated `rate`).
async fn create_grants(setup: &Setup<'_>, layout: &Layout, options: &Options, rate: f64) -> Result<Created> {
    let (kind, n, window) = (setup.service.kind(), layout.grants, options.window_seconds);
    let estimate = n as f64 / rate * SAFETY_FACTOR + options.margin_seconds as f64;
    let planned_start = Utc::now() + chrono::Duration::milliseconds((estimate * 1000.0) as i64);
    eprintln!(
        "revocation ({kind}): creating {n} grants with {} clients (~{rate:.0}/s measured), sessions open; \
         they expire from {} over {window}s",
        options.clients,
        planned_start.format("%H:%M:%S")
    );
    let seconds = move |i: usize| {
        let at = planned_start + chrono::Duration::seconds((i as u64 % window) as i64);
        let millis = (at - Utc::now()).num_milliseconds().max(0) as u64;
        millis.div_ceil(1000).max(1)
    };
    let started = Instant::now();
    let (grants, failures) = setup
        .issue_many(
            layout.calibration,
            n,
            options.clients,
            &seconds,
            &|i| opens_session(kind, options, i),
            &|i| opens_cli(kind, options, i),
        )
        .await;
    let creation_seconds = started.elapsed().as_secs_f64();
    if !failures.is_empty() {
        eprintln!(
            "WARNING: {} grant(s) could not be created or opened; first errors: {}",
            failures.len(),
            samples(&failures).join(" | ")
        );
    }
    if grants.is_empty() {
        bail!("no grant was created: {}", samples(&failures).join(" | "));
    }
    let outside_window = outside_window(&grants, planned_start, window);
    let (issue, session_open) = issue_latency(&grants)?;
    eprintln!(
        "revocation ({kind}): created {} grants in {creation_seconds:.1}s; {} outside the planned window",
        grants.len(),
        outside_window
    );
    Ok(Created {
        grants,
        failures,
        planned_start,
        creation_seconds,
        outside_window,
        issue,
        session_open,
    })
}

/// Grants whose `expires_at` missed [start, start + window + 2 s].
fn outside_window(grants: &[Issued], start: DateTime<Utc>, window: u64) -> usize {
    let end = start + chrono::Duration::seconds(window as i64 + 2);
    grants
        .iter()
        .filter(|g| g.expires_at < start || g.expires_at > end)
        .count()
}

/// How long the grants' requests, credentials and sessions took to get.
fn issue_latency(grants: &[Issued]) -> Result<(IssueLatency, Summary)> {
    let (mut request, mut credentials, mut total, mut session_open) = (
        Latencies::new()?,
        Latencies::new()?,
        Latencies::new()?,
        Latencies::new()?,
    );
    for grant in grants {
        request.record(grant.request);
        credentials.record(grant.credentials);
        total.record(grant.request + grant.credentials);
        if let Some(took) = grant.session_open {
            session_open.record(took);
        }
    }
    let issue = IssueLatency {
        request: request.summary(),
        credentials: credentials.summary(),
        total: total.summary(),
    };
    Ok((issue, session_open.summary()))
}
