//! Requests to a deployed Ferry API (API Gateway with IAM authorization) signed with AWS
//! Signature Version 4, from the operator's AWS credentials (the SDK's standard chain:
//! environment, `--profile`/`AWS_PROFILE`, SSO, instance or container role). The signing itself
//! is the AWS SDK's own (`aws-sigv4`); this file picks the credentials and region and applies
//! the signature to a request. The service name is API Gateway's, `execute-api`.

use std::time::SystemTime;

use anyhow::{Context, Result};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// API Gateway's service name in signatures.
const SERVICE: &str = "execute-api";

/// Signs requests with the operator's credentials, for one region.
#[derive(Clone)]
pub(crate) struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({SERVICE}, {})", self.region)
    }
}

impl Signer {
    /// The standard credential chain (with `profile` when given) and its region; the region
    /// comes from the endpoint's host when it names one (`….execute-api.<region>.amazonaws.com`).
    pub(crate) async fn from_environment(profile: Option<&str>, endpoint: &str) -> Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        let config = loader.load().await;
        let credentials = config.credentials_provider().context(
            "no AWS credentials: set AWS_PROFILE or --profile, or the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables",
        )?;
        let region = region_of(endpoint)
            .map(str::to_owned)
            .or_else(|| config.region().map(|r| r.to_string()))
            .context(
                "no AWS region: the endpoint names none; set AWS_REGION or the profile's region",
            )?;
        Ok(Self {
            credentials,
            region,
        })
    }

    /// The headers that sign a request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials), for `headers` it already has (with
    /// `host`) and its body.
    pub(crate) async fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .context("reading the AWS credentials")?;
        sign_request(
            &credentials,
            &self.region,
            SERVICE,
            SystemTime::now(),
            method,
            url,
            headers,
            body,
        )
    }
}

/// The `Host` header a client sends for `url`: the host, and the port when it is not the
/// scheme's default (what is signed must be what is sent).
pub(crate) fn host_header(url: &str) -> Result<String> {
    let url = reqwest::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    let host = url.host_str().context("a URL without a host")?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// The region an API Gateway endpoint names (`abc123.execute-api.eu-west-1.amazonaws.com`).
fn region_of(endpoint: &str) -> Option<&str> {
    let host = endpoint.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    parts.find(|p| *p == SERVICE)?;
    parts.next()
}

/// The signature headers of one request, at `time`.
#[allow(clippy::too_many_arguments)] // each part of the request is one value of the signature
fn sign_request(
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .context("signing parameters")?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .context("a request that cannot be signed")?;
    let (instructions, _) = sign(request, &params)
        .context("signing the request")?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own Signature Version 4 test suite, `get-vanilla`: the request, the credentials and
    /// the time it gives, and the Authorization header it publishes.
    #[test]
    fn the_published_sigv4_test_vector_signs_alike() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test-suite",
        );
        // 2015-08-30T12:36:00Z
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let headers = sign_request(
            &credentials,
            "us-east-1",
            "service",
            time,
            "GET",
            "https://example.amazonaws.com/",
            &[("host", "example.amazonaws.com")],
            b"",
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn temporary_credentials_add_their_token() {
        let credentials = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        let headers = sign_request(
            &credentials,
            "eu-west-1",
            SERVICE,
            SystemTime::now(),
            "POST",
            "https://abc.execute-api.eu-west-1.amazonaws.com/v1/instances",
            &[("host", "abc.execute-api.eu-west-1.amazonaws.com")],
            b"{}",
        )
        .unwrap();
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "token")
        );
    }

    #[test]
    fn the_host_header_keeps_a_port_that_is_not_the_default() {
        assert_eq!(
            host_header("http://127.0.0.1:8600/v1").unwrap(),
            "127.0.0.1:8600"
        );
        assert_eq!(
            host_header("https://abc.execute-api.eu-west-1.amazonaws.com:443/prod").unwrap(),
            "abc.execute-api.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn the_region_is_read_from_an_api_gateway_endpoint() {
        assert_eq!(
            region_of("https://abc123.execute-api.eu-west-1.amazonaws.com/prod"),
            Some("eu-west-1")
        );
        assert_eq!(region_of("http://127.0.0.1:8600"), None);
    }
}
