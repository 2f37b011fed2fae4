//! One complete run (DESIGN.md "What happens on a boot" steps 1-5): the evidence collection,
//! the THIM fetch, the provider-key prefetch and the managed-identity token(s) start together
//! (`tokio::join!`); only attest → (verify) → release is serial. One attestation and one
//! identity token per audience serve every key of the run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{release_key, KeyRequest, ReleasedKey};
use crate::attest::error::FlowError;
use crate::attest::flow::{attest, Attestation, Evidence};
use crate::attest::report::RunReport;
use crate::attest::services::Services;
use crate::format::jose::x5c::ChainCert;
use crate::net::{Deadline, Step};

/// What a successful run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The verified attestation.
    pub attestation: Attestation,
    /// The released keys, in request order.
    pub keys: Vec<ReleasedKey>,
    /// Timings.
    pub report: RunReport,
}

/// Attests with `evidence` and releases every key of `keys` (none: attestation only),
/// concurrently. `roots` are the release response's trust anchors
/// ([`super::roots::load_roots`]).
pub async fn run(
    services: &Services,
    evidence: impl Into<Evidence>,
    keys: &[KeyRequest],
    roots: &[ChainCert],
    deadline: &Deadline,
) -> Result<RunOutcome, FlowError> {
    let evidence = evidence.into();
    let mut report = RunReport::start(evidence.name());
    let timings_before = services.http.timings().len();
    let attestation = attest_for(services, evidence, keys, deadline, &mut report).await?;
    let released = release_all(services, &attestation, keys, roots, deadline, &mut report).await;
    for t in services.http.timings().iter().skip(timings_before) {
        report.http(t.step.as_str(), t.attempts, t.elapsed);
    }
    report.finish();
    Ok(RunOutcome {
        attestation,
        keys: released?,
        report,
    })
}

/// Attests with `evidence` and verifies the token, while the identity tokens `keys` will need
/// and the provider's keys are fetched alongside (the later releases then find their bearer in
/// the cache).
pub async fn attest_for(
    services: &Services,
    evidence: impl Into<Evidence>,
    keys: &[KeyRequest],
    deadline: &Deadline,
    report: &mut RunReport,
) -> Result<Attestation, FlowError> {
    let resources: BTreeSet<&'static str> = keys.iter().map(|k| k.url.token_resource).collect();
    let identity = async {
        for r in &resources {
            services.identity_token(r, deadline).await?;
        }
        Ok::<_, FlowError>(())
    };
    let (unverified, tokens, prefetch) = tokio::join!(
        attest(services, evidence.into(), deadline, report),
        identity,
        services.prefetch_provider_keys(deadline)
    );
    let unverified = unverified?;
    prefetch?;
    // Verification is local work, except a refetch of the provider's keys it may need (a `kid`
    // the prefetched set lacks): that is time on the network, not on this machine.
    let fetches_before = services.http.timings().len();
    let t = Instant::now();
    let attestation = unverified.verify(services, deadline).await?;
    let refetch: Duration = services
        .http
        .timings()
        .iter()
        .skip(fetches_before)
        .filter(|s| matches!(s.step, Step::OpenIdConfig | Step::Jwks))
        .map(|s| s.elapsed)
        .sum();
    report.local(t.elapsed().saturating_sub(refetch));
    tokens?;
    Ok(attestation)
}

/// Releases every key of `keys` to `att` concurrently (one attestation serves them all): the
/// keys in request order, or the first failure in that order.
pub async fn release_all(
    services: &Services,
    att: &Attestation,
    keys: &[KeyRequest],
    roots: &[ChainCert],
    deadline: &Deadline,
    report: &mut RunReport,
) -> Result<Vec<ReleasedKey>, FlowError> {
    let source = report.source;
    let results = futures_util::future::join_all(keys.iter().map(|key| async move {
        let mut branch = RunReport::start(source);
        let result = release_key(services, att, key, roots, deadline, &mut branch).await;
        (result, branch)
    }))
    .await;
    let (results, branches): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    report.join_parallel(&branches);
    results.into_iter().collect()
}
