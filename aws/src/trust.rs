//! Which certificate authorities the HTTPS client trusts.
//!
//! The command line trusts the platform's store, as any tool would. The Lambda functions
//! only ever call AWS service endpoints, whose certificates all chain to Amazon Trust
//! Services' roots; those five certificates are compiled in. Reading and decoding the
//! platform's bundle (~145 certificates of PEM) cost each cold start about 2 ms, a third of
//! the api function's init (bench/lambda-init/README.md).
//!
//! `AWS_CA_BUNDLE`, the variable the AWS CLI and the other AWS SDKs read (the Rust SDK does
//! not), overrides either default: the PEM file it names is then the whole trust store, e.g.
//! for a TLS-inspecting proxy or an emulator with its own certificate authority.

use crate::config::ConfigError;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2 (which cross-signs them).
pub const AMAZON_TRUST_SERVICES_PEM: &str = include_str!("amazon-trust-services.pem");

/// The variable naming a PEM bundle to trust instead of the default.
pub const AWS_CA_BUNDLE: &str = "AWS_CA_BUNDLE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The platform's store (`SSL_CERT_FILE`, `SSL_CERT_DIR` or the system bundle).
    Platform,
    /// Amazon Trust Services' roots, compiled in.
    AmazonTrustServices,
    /// The certificates of a PEM bundle, already checked by [`TrustRoots::from_pem`].
    Pem(Arc<[u8]>),
}

impl TrustRoots {
    /// `AWS_CA_BUNDLE`'s file when the variable is set (and not empty), else `default`.
    pub fn from_env_or(default: TrustRoots) -> Result<TrustRoots, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name), default)
    }

    fn from_lookup(
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
        default: TrustRoots,
    ) -> Result<TrustRoots, ConfigError> {
        match lookup(AWS_CA_BUNDLE).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(path) => {
                let invalid = |reason: String| ConfigError::Invalid {
                    name: AWS_CA_BUNDLE,
                    reason: format!("{}: {reason}", path.to_string_lossy()),
                };
                let pem = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
                TrustRoots::from_pem(pem).map_err(invalid)
            }
        }
    }

    /// A bundle of PEM certificates; refused unless it holds at least one and every one
    /// of them is a usable trust anchor (the SDK's client would panic on a bad one).
    pub fn from_pem(pem: impl Into<Vec<u8>>) -> Result<TrustRoots, String> {
        let pem = pem.into();
        root_store(&pem)?;
        Ok(TrustRoots::Pem(pem.into()))
    }
}

/// The trust anchors a PEM bundle holds.
pub fn root_store(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| format!("certificate {}: {e}", n + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {}: {e}", n + 1))?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate in it".to_string());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_amazon_trust_services_five() {
        let roots = root_store(AMAZON_TRUST_SERVICES_PEM.as_bytes()).expect("valid roots");
        let subjects: Vec<String> = roots
            .roots
            .iter()
            .map(|anchor| String::from_utf8_lossy(anchor.subject.as_ref()).into_owned())
            .collect();
        assert_eq!(subjects.len(), 5);
        for (subject, name) in subjects.iter().zip([
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ]) {
            assert!(subject.contains(name), "{subject:?} should name {name}");
        }
    }

    #[test]
    fn a_bundle_without_certificates_or_with_a_broken_one_is_refused() {
        let empty = TrustRoots::from_pem("just text").unwrap_err();
        assert_eq!(empty, "no PEM certificate in it");

        let broken = format!(
            "{AMAZON_TRUST_SERVICES_PEM}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        );
        let err = TrustRoots::from_pem(broken).unwrap_err();
        assert!(err.starts_with("certificate 6: "), "{err}");

        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = TrustRoots::from_pem(bad_base64).unwrap_err();
        assert!(err.starts_with("certificate 1: "), "{err}");
    }

    #[test]
    fn aws_ca_bundle_names_the_file_that_replaces_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, AMAZON_TRUST_SERVICES_PEM).expect("write");
        fn env(value: Option<&std::path::Path>) -> impl Fn(&str) -> Option<std::ffi::OsString> {
            let value = value.map(|p| p.as_os_str().to_owned());
            move |name| {
                assert_eq!(name, AWS_CA_BUNDLE);
                value.clone()
            }
        }
        let unset = TrustRoots::from_lookup(env(None), TrustRoots::Platform);
        assert_eq!(unset, Ok(TrustRoots::Platform));
        let empty = TrustRoots::from_lookup(|_| Some("".into()), TrustRoots::Platform);
        assert_eq!(empty, Ok(TrustRoots::Platform));
        let set = TrustRoots::from_lookup(env(Some(&bundle)), TrustRoots::AmazonTrustServices);
        assert_eq!(
            set,
            Ok(TrustRoots::Pem(AMAZON_TRUST_SERVICES_PEM.as_bytes().into()))
        );

        let missing = dir.path().join("missing.pem");
        let err = TrustRoots::from_lookup(env(Some(&missing)), TrustRoots::Platform).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("environment variable AWS_CA_BUNDLE is invalid: ")
                && text.contains("missing.pem: "),
            "{text}"
        );
        std::fs::write(&bundle, "not a bundle").expect("write");
        let err = TrustRoots::from_lookup(env(Some(&bundle)), TrustRoots::Platform).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("ca.pem: no PEM certificate in it"),
            "{err}"
        );
    }

    #[test]
    fn a_valid_bundle_is_kept_whole() {
        match TrustRoots::from_pem(AMAZON_TRUST_SERVICES_PEM) {
            Ok(TrustRoots::Pem(pem)) => assert_eq!(&*pem, AMAZON_TRUST_SERVICES_PEM.as_bytes()),
            other => panic!("{other:?}"),
        }
    }
}
