//! Test PKI and TLS clients: a private CA (rcgen) issuing per-name certificates, an RSA certificate
//! made by the real `openssl` binary, rustls handshakes that report what the server presented.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Once};

use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// Install ring as the process-wide rustls provider (the project never compiles in aws-lc-rs).
pub fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// A leaf certificate and key as PEM files would hold them.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub fingerprint: String,
}

impl Leaf {
    /// Write `<stem>.crt` and `<stem>.key` into `dir` atomically (temp file + rename, as certbot does).
    pub fn write(&self, dir: &Path, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        for (path, text) in [(&key, &self.key_pem), (&cert, &self.chain_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (cert, key)
    }
}

pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
    key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, key algorithm `alg` (ECDSA P-256/P-384, Ed25519), CN = first name.
    pub fn leaf(&self, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Leaf {
        self.leaf_with(names, alg, |_| {})
    }

    pub fn leaf_with(
        &self,
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
        tweak: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Leaf {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        tweak(&mut params);
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            fingerprint: fingerprint(cert.der()),
            der: cert.der().clone(),
        }
    }
}

/// Run the real `openssl` binary; fail loudly (with the install hint) when it is missing.
pub fn openssl(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl is required for this test ({e}): run `bash .ci/prereqs test` (apt-get install openssl)"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// An RSA-2048 certificate for `name` issued by `ca`, made with the real `openssl` binary (rcgen
/// cannot generate RSA keys).
pub fn openssl_rsa_leaf(ca: &TestCa, dir: &Path, name: &str) -> Leaf {
    let p = |f: &str| dir.join(format!("{name}.{f}")).to_str().unwrap().to_string();
    std::fs::write(p("ca.crt"), &ca.pem).unwrap();
    std::fs::write(p("ca.key"), &ca.key_pem).unwrap();
    std::fs::write(
        p("ext"),
        format!("subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n"),
    )
    .unwrap();
    let steps: [&[&str]; 2] = [
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &p("key"),
            "-out",
            &p("csr"),
        ],
        &[
            "x509",
            "-req",
            "-in",
            &p("csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &p("ext"),
            "-out",
            &p("crt"),
        ],
    ];
    for args in steps {
        let out = openssl(args, "");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let leaf_pem = std::fs::read_to_string(p("crt")).unwrap();
    let key = p("key");
    let chain_pem = format!("{leaf_pem}{}", ca.pem);
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(chain_pem.as_bytes())
        .unwrap()
        .into_owned();
    Leaf {
        fingerprint: fingerprint(&der),
        der,
        chain_pem,
        key_pem: std::fs::read_to_string(&key).unwrap(),
    }
}

pub fn client_config(roots: &[&CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    init_crypto();
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// What a completed handshake showed.
#[derive(Debug)]
pub struct Handshake {
    pub fingerprint: String,
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
}

/// Handshake with `addr` sending `sni`; verifies against `config`'s roots.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Handshake> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    Ok(Handshake {
        fingerprint: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| fingerprint(c))
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(|p| p.to_vec()),
        version: conn.protocol_version(),
    })
}

/// An HTTPS client trusting `roots`, with `names` resolved to `addr` (so SNI and Host are the name).
pub fn https_client(roots: &[&CertificateDer<'static>], names: &[&str], addr: SocketAddr) -> reqwest::Client {
    let cfg = client_config(roots, &[b"h2", b"http/1.1"]);
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .tls_backend_preconfigured((*cfg).clone());
    for n in names {
        b = b.resolve(n, addr);
    }
    b.build().expect("https client")
}
