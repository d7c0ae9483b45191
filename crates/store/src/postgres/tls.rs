//! [`SslMode`] and [`MakeRustls`]: TLS to the PostgreSQL server, with the
//! rustls stack (ring) the HTTP client uses.
//!
//! The modes are libpq's, and mean what they mean there:
//!
//! | mode | encrypted | server checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS, else in the clear | no |
//! | `require` | always | no |
//! | `verify-ca` | always | its certificate chains to a trusted authority |
//! | `verify-full` | always | that, and the certificate names the URL's host |
//!
//! The trusted authorities are the Mozilla roots plus `--ca-file`, or,
//! when `sslrootcert` names a file, that file's alone (libpq trusts only
//! it too). `verify-ca` never trusts the Mozilla roots: it checks no name,
//! so against them any public certificate for any domain would pass; it
//! needs an `sslrootcert` file or `--ca-file` (libpq needs a root file).
//! As in libpq, `require` (and `prefer`) with an `sslrootcert` file check
//! the chain, as `verify-ca` does; `sslrootcert=system` means
//! the default authorities and demands `verify-full`. What libpq would
//! find in `~/.postgresql/root.crt` is not read: name it in
//! `sslrootcert`. `prefer` falls back to the clear when the server offers
//! no TLS, not when a TLS handshake fails.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// How a store's connections use TLS: libpq's `sslmode`, see the module
/// documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// Every mode, by its name in a URL.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The mode named `text` (`verify-full`, …). libpq's `allow` (the
    /// clear first, TLS when the server insists) is taken as `prefer`,
    /// which connects wherever `allow` does and encrypts more often.
    pub fn parse(text: &str) -> Option<SslMode> {
        if text == "allow" {
            return Some(SslMode::Prefer);
        }
        SslMode::ALL.into_iter().find(|m| m.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// tokio-postgres's own mode: whether it asks for TLS and whether it
    /// may go on without.
    pub(super) fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of a store, beside what its URL says.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The mode when the URL names none (the URL's `sslmode` wins);
    /// `prefer` when neither does.
    pub mode: Option<SslMode>,
    /// `sslrootcert` when the URL names none: a PEM file of the only
    /// authorities to trust, or `system`.
    pub root_cert: Option<PathBuf>,
    /// Authorities trusted beside the Mozilla roots (`--ca-file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// Whom a connection trusts, once the URL and the options are merged.
#[derive(Debug)]
pub(super) enum Trust {
    /// The Mozilla roots and these (`--ca-file`).
    Default(Vec<CertificateDer<'static>>),
    /// The same, named as `sslrootcert=system`: `verify-full` only.
    System(Vec<CertificateDer<'static>>),
    /// The certificates of an `sslrootcert` file, alone.
    File(PathBuf),
}

impl Trust {
    /// `sslrootcert` (a file, or `system`) when one is given, with the
    /// authorities of `--ca-file`.
    pub(super) fn of(root_cert: Option<PathBuf>, extra: Vec<CertificateDer<'static>>) -> Trust {
        match root_cert {
            Some(path) if path.as_os_str() == "system" => Trust::System(extra),
            Some(path) => Trust::File(path),
            None => Trust::Default(extra),
        }
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Any certificate (the connection is encrypted, its peer unknown).
    Nothing,
    /// Its chain, not the name it is for.
    Chain,
    /// Its chain and its name.
    Full,
}

/// What `mode` checks, given whether an `sslrootcert` file is named; an
/// error for a combination libpq refuses too.
pub(super) fn check_of(mode: SslMode, trust: &Trust) -> Result<Check, String> {
    Ok(match mode {
        SslMode::VerifyFull => Check::Full,
        _ if matches!(trust, Trust::System(_)) => {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full, not {mode}"
            ));
        }
        SslMode::VerifyCa => {
            if matches!(trust, Trust::Default(extra) if extra.is_empty()) {
                return Err(
                    "sslmode=verify-ca needs the authority that signed the server's \
                     certificate: name its PEM file with sslrootcert=FILE (or --ca-file), \
                     or use sslmode=verify-full, which also checks the host name"
                        .into(),
                );
            }
            Check::Chain
        }
        // libpq: with a root certificate file, require acts as verify-ca.
        SslMode::Require | SslMode::Prefer if matches!(trust, Trust::File(_)) => Check::Chain,
        SslMode::Require | SslMode::Prefer | SslMode::Disable => Check::Nothing,
    })
}

/// The certificates in the PEM file `path`.
fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("sslrootcert: cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "sslrootcert: {} is not a PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The TLS client every connection of a store uses: see the module
/// documentation for what `check` and `trust` mean.
pub(super) fn connector(check: Check, trust: &Trust) -> Result<MakeRustls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(Unverified(provider.clone())),
        Check::Chain | Check::Full => {
            let mut roots = RootCertStore::empty();
            let certs = match trust {
                Trust::File(path) => read_pem(path)?,
                Trust::Default(extra) | Trust::System(extra) => {
                    // Public authorities vouch for names: without the
                    // name check (verify-ca) only the operator's own count.
                    if check == Check::Full {
                        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    }
                    extra.clone()
                }
            };
            for cert in certs {
                // A certificate that is no authority only fails to verify
                // what it signs.
                let _ = roots.add(cert);
            }
            if let (Trust::File(path), true) = (trust, roots.is_empty()) {
                return Err(format!(
                    "sslrootcert: {} holds no certificate usable as an authority",
                    path.display()
                ));
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
            if check == Check::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustls(Arc::new(config)))
}

/// `verify-ca`: the chain is checked as `verify-full` checks it, and a
/// certificate for another name than the URL's host is accepted — the
/// only error forgiven.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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

/// `require` and `prefer` without an `sslrootcert`: any certificate is
/// accepted (libpq's meaning: encrypted, not authenticated), though the
/// handshake's signatures are still checked against it.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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

/// tokio-postgres's TLS hook, over tokio-rustls: one [`RustlsConnect`] per
/// connection, for the host it connects to (checked by `verify-full`,
/// and sent as SNI when it is a name).
#[derive(Clone)]
pub(super) struct MakeRustls(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        // No host is a Unix socket, over which PostgreSQL never speaks TLS
        // (and tokio-postgres would not shake hands without a host): any
        // name serves.
        let host = if host.is_empty() { "localhost" } else { host };
        Ok(RustlsConnect {
            config: self.0.clone(),
            server: ServerName::try_from(host)?.to_owned(),
        })
    }
}

/// One connection's handshake: see [`MakeRustls`].
pub(super) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    server: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            let stream = connector.connect(self.server, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A connection over TLS. It offers no channel binding, so SCRAM
/// authenticates without it (`SCRAM-SHA-256`, not `-PLUS`).
pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_checks_what_libpq_checks() {
        let default = Trust::of(None, Vec::new());
        let file = Trust::of(Some("ca.pem".into()), Vec::new());
        let system = Trust::of(Some("system".into()), Vec::new());
        let check = |mode: &str, trust: &Trust| check_of(SslMode::parse(mode).unwrap(), trust);
        assert_eq!(check("disable", &default), Ok(Check::Nothing));
        assert_eq!(check("prefer", &default), Ok(Check::Nothing));
        assert_eq!(check("require", &default), Ok(Check::Nothing));
        assert_eq!(check("require", &file), Ok(Check::Chain));
        assert_eq!(check("verify-ca", &file), Ok(Check::Chain));
        let ca_file = Trust::of(None, vec![CertificateDer::from(vec![0u8])]);
        assert_eq!(check("verify-ca", &ca_file), Ok(Check::Chain));
        // Against the public roots, any certificate of any domain would do.
        assert!(
            check("verify-ca", &default)
                .unwrap_err()
                .starts_with("sslmode=verify-ca needs the authority")
        );
        assert_eq!(check("verify-full", &file), Ok(Check::Full));
        assert_eq!(check("verify-full", &system), Ok(Check::Full));
        assert_eq!(
            check("require", &system),
            Err("sslrootcert=system needs sslmode=verify-full, not require".into())
        );
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("allow"), Some(SslMode::Prefer));
        for mode in SslMode::ALL {
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
    }

    #[test]
    fn an_sslrootcert_file_that_cannot_be_used_is_named_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |path: &Path| match connector(Check::Chain, &Trust::File(path.into())) {
            Ok(_) => panic!("{} was taken", path.display()),
            Err(reason) => reason,
        };
        let missing = dir.path().join("missing.pem");
        let reason = refused(&missing);
        assert!(
            reason.starts_with(&format!("sslrootcert: cannot read {}: ", missing.display())),
            "{reason}"
        );
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        assert_eq!(
            refused(&text),
            format!("sslrootcert: {} holds no PEM certificate", text.display())
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let reason = refused(&broken);
        assert!(
            reason.starts_with(&format!(
                "sslrootcert: {} is not a PEM certificate file: ",
                broken.display()
            )),
            "{reason}"
        );
        // Well-formed PEM whose content is no certificate.
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(
            refused(&garbage),
            format!(
                "sslrootcert: {} holds no certificate usable as an authority",
                garbage.display()
            )
        );
        for reason in [refused(&missing), refused(&text), refused(&broken)] {
            assert_eq!(reason.lines().count(), 1, "{reason}");
        }
    }
}
