//! THIM: the VCEK certificate and AMD chain from IMDS (PROTOCOLS.md §2.3). I/O edge over the
//! pure parser [`crate::format::snp::thim::parse_thim_document`].

use url::Url;

use super::error::IdentityError;
use crate::format::snp::thim::{parse_thim_document, ThimCerts};
use crate::net::{Deadline, HttpClient, HttpRequest, HttpResponse, Step};

/// The THIM path (no api-version is sent by any client).
pub const THIM_PATH: &str = "/metadata/THIM/amd/certification";

/// The THIM URL under an IMDS base URL.
pub fn thim_url(imds_url: &Url) -> Url {
    let mut url = imds_url.clone();
    url.set_path(THIM_PATH);
    url.set_query(None);
    url
}

/// Fetches and parses the THIM document: VCEK + chain (ASK, ARK) and the TCB it is for.
/// Returns the HTTP response too (timings).
pub async fn fetch_vcek_chain(
    http: &HttpClient,
    imds_url: &Url,
    deadline: &Deadline,
) -> Result<(ThimCerts, HttpResponse), IdentityError> {
    let req = HttpRequest::get(Step::Thim, thim_url(imds_url)).header("Metadata", "true");
    let resp = http.send(req, deadline).await?;
    if resp.status != 200 {
        return Err(IdentityError::ThimStatus {
            status: resp.status,
        });
    }
    let certs = parse_thim_document(&resp.body)?;
    Ok((certs, resp))
}
