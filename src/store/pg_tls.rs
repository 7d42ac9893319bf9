//! TLS to PostgreSQL (rustls with the `ring` provider, as the HTTPS push
//! channels use), chosen by the store URL's `sslmode` as libpq does:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | absent, `disable`, `allow`, `prefer` | no | — |
//! | `require` | yes, or the connection fails | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | yes | chains to `sslrootcert` |
//! | `verify-full` | yes | chains to `sslrootcert` and names the host |
//!
//! `sslrootcert` is a PEM file, or `system` for the system's roots. The
//! `postgres` crate reads neither `verify-*` nor `sslrootcert`: both are
//! taken out of the URL here and the rest handed on with `sslmode=require`.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Plain TCP.
    Off,
    /// TLS; the certificate is not checked.
    Require,
    /// TLS; the certificate chains to the roots.
    VerifyCa,
    /// TLS; the certificate chains to the roots and names the host.
    VerifyFull,
}

/// A store URL taken apart: what to hand to the `postgres` crate, the TLS
/// mode and the roots file (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL without `sslrootcert`, `sslmode` rewritten for the crate.
    pub url: String,
    /// The TLS wanted.
    pub mode: Mode,
    /// `sslrootcert`, if given.
    pub root_cert: Option<String>,
}

/// Reads `sslmode` and `sslrootcert` out of a `postgres://` URL.
pub fn parse(url: &str) -> anyhow::Result<Target> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut keep = Vec::new();
    let mut mode = Mode::Off;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                mode = match v {
                    "disable" | "allow" | "prefer" => Mode::Off,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => anyhow::bail!(
                        "sslmode={other:?}: use disable, prefer, require, verify-ca or verify-full"
                    ),
                }
            }
            "sslrootcert" => root_cert = Some(percent_decode(v)),
            _ => keep.push(pair),
        }
    }
    if mode == Mode::Require && root_cert.is_some() {
        // libpq: with a root certificate, require checks the chain.
        mode = Mode::VerifyCa;
    }
    if matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && root_cert.is_none() {
        anyhow::bail!(
            "sslmode=verify-ca and verify-full need sslrootcert=PATH (a PEM file of the CA) \
             or sslrootcert=system"
        );
    }
    keep.push(match mode {
        Mode::Off => "sslmode=disable",
        _ => "sslmode=require",
    });
    Ok(Target {
        url: format!("{base}?{}", keep.join("&")),
        mode,
        root_cert,
    })
}

/// `%XX` escapes decoded (a path in a URL query).
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects as `target` says.
pub fn connect(target: &Target) -> anyhow::Result<postgres::Client> {
    if target.mode == Mode::Off {
        return Ok(postgres::Client::connect(&target.url, postgres::NoTls)?);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS for PostgreSQL")?;
    let config = match target.mode {
        Mode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        _ => {
            let roots = Arc::new(roots(target.root_cert.as_deref().unwrap_or("system"))?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .context("TLS for PostgreSQL: the certificate verifier")?;
            let verifier: Arc<dyn ServerCertVerifier> = if target.mode == Mode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    Ok(postgres::Client::connect(&target.url, tls)?)
}

/// The roots in a PEM file, or the system's for `system`.
fn roots(source: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if source == "system" {
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    } else {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(source)
            .and_then(|it| it.collect::<Result<_, _>>())
            .with_context(|| format!("sslrootcert {source}: not a PEM certificate file"))?;
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("sslrootcert {source}: unusable certificate"))?;
        }
    }
    anyhow::ensure!(!roots.is_empty(), "sslrootcert {source}: no certificate");
    Ok(roots)
}

/// `sslmode=require` without roots: any certificate (libpq's behaviour;
/// the connection is encrypted, the server not authenticated). The
/// handshake signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_and_taken_out() {
        let t = parse("postgres://u@db/x").expect("plain");
        assert_eq!(t.mode, Mode::Off);
        assert_eq!(t.url, "postgres://u@db/x?sslmode=disable");
        let t = parse("postgres://u@db/x?sslmode=require&options=-csearch_path%3Ds").expect("req");
        assert_eq!(t.mode, Mode::Require);
        assert_eq!(
            t.url,
            "postgres://u@db/x?options=-csearch_path%3Ds&sslmode=require"
        );
        let t = parse("postgres://u@db/x?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full")
            .expect("full");
        assert_eq!(t.mode, Mode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(t.url, "postgres://u@db/x?sslmode=require");
        let t = parse("postgres://u@db/x?sslmode=require&sslrootcert=/ca.pem").expect("ca");
        assert_eq!(
            t.mode,
            Mode::VerifyCa,
            "require with a root checks the chain"
        );
        assert!(parse("postgres://u@db/x?sslmode=verify-full").is_err());
        assert!(parse("postgres://u@db/x?sslmode=always").is_err());
    }
}
