//! Let's Encrypt's test CA, pebble (Debian package `pebble`), with pebble-challtestsrv as its DNS
//! server (every name resolves to 127.0.0.1), as spec/tls-acme.md's recipe describes. Both children
//! are killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::tls::TestCa;
use super::{eventually, free_port};

pub struct Pebble {
    /// `https://127.0.0.1:<port>/dir`
    pub directory: String,
    /// PEM of the CA that signed pebble's own HTTPS certificate (for `[acme] ca_file`).
    pub https_ca: PathBuf,
    pub management: SocketAddr,
    https_ca_der: rustls::pki_types::CertificateDer<'static>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command, name: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} is required for the ACME tests ({e}): run `bash .ci/prereqs test` (apt-get install pebble)"))
}

impl Pebble {
    /// Validate HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of 127.0.0.1 (vestibule's
    /// listeners); issued certificates live `validity_secs` when given.
    pub async fn start(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("pebble https CA");
        let leaf = ca.leaf(&["localhost", "127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let (cert, key) = leaf.write(dir.path(), "pebble");
        let https_ca = dir.path().join("pebble-https-ca.pem");
        std::fs::write(&https_ca, &ca.pem).unwrap();
        let (listen, mgmt, dns, chall_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false
        });
        if let Some(v) = validity_secs {
            pebble["certificateValidityPeriod"] = v.into();
        }
        let config = dir.path().join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let challtestsrv = spawn(
            Command::new("pebble-challtestsrv").args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{chall_mgmt}"),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]),
            "pebble-challtestsrv",
        );
        let server = spawn(
            Command::new("pebble")
                .args([
                    "-config",
                    config.to_str().unwrap(),
                    "-dnsserver",
                    &format!("127.0.0.1:{dns}"),
                ])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            "pebble",
        );
        let p = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            https_ca,
            management: SocketAddr::from(([127, 0, 0, 1], mgmt)),
            https_ca_der: ca.der.clone(),
            children: vec![challtestsrv, server],
            _dir: dir,
        };
        let client = p.client();
        eventually("pebble serves its directory", || async {
            client
                .get(&p.directory)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        })
        .await;
        p
    }

    fn client(&self) -> reqwest::Client {
        super::tls::init_crypto();
        let cfg = super::tls::client_config(&[&self.https_ca_der], &[b"http/1.1"]);
        reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured((*cfg).clone())
            .build()
            .unwrap()
    }

    /// The root that signs the certificates pebble issues (new at every start).
    pub async fn issuing_root(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let pem = self
            .client()
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .into_owned()
    }
}
