//! One complete run (DESIGN.md "What happens on a boot" steps 1-5): the evidence collection,
//! the THIM fetch, the provider-key prefetch and the managed-identity token(s) start together
//! (`tokio::join!`); only attest → (verify) → release is serial. One attestation and one
//! identity token per audience serve every key of the run.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{release_key, KeyRequest, ReleasedKey};
use crate::attest::collect::Source;
use crate::attest::error::FlowError;
use crate::attest::flow::{attest, Attestation};
use crate::attest::report::RunReport;
use crate::attest::services::Services;
use crate::format::jose::x5c::ChainCert;
use crate::net::Deadline;

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

/// Attests with `source` and releases every key of `keys` (none: attestation only).
/// `roots` are the release response's trust anchors ([`super::roots::load_roots`]).
pub async fn run(
    services: &Services,
    source: Source,
    keys: &[KeyRequest],
    roots: &[ChainCert],
    deadline: &Deadline,
) -> Result<RunOutcome, FlowError> {
    let mut report = RunReport::start(source.name());
    let timings_before = services.http.timings().len();
    let resources: BTreeSet<&'static str> = keys.iter().map(|k| k.url.token_resource).collect();
    // Warms the token cache: the release calls then find their bearer there.
    let identity = async {
        for r in &resources {
            services.identity_token(r, deadline).await?;
        }
        Ok::<_, FlowError>(())
    };
    let (unverified, tokens, prefetch) = tokio::join!(
        attest(services, source, deadline, &mut report),
        identity,
        services.prefetch_provider_keys(deadline)
    );
    let unverified = unverified?;
    prefetch?;
    let t = Instant::now();
    let attestation = unverified.verify(services, deadline).await?;
    report.local(t.elapsed());
    tokens?;
    let mut released = Vec::with_capacity(keys.len());
    for key in keys {
        released
            .push(release_key(services, &attestation, key, roots, deadline, &mut report).await?);
    }
    for t in services.http.timings().iter().skip(timings_before) {
        report.http(t.step.as_str(), t.attempts, t.elapsed);
    }
    report.finish();
    Ok(RunOutcome {
        attestation,
        keys: released,
        report,
    })
}
