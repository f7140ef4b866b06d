//! A real OpenLDAP server (Debian's `slapd`) with its own configuration, database and schema in a
//! temporary directory: loaded offline with `slapadd`, started in the foreground on a free
//! loopback port, ready once a bind answers, killed on drop.
//!
//! Like Active Directory (MaxPageSize 1,000), it answers at most 1,000 entries to one search
//! without paging (`sizelimit 1000`), so a reader that does not page gets "size limit exceeded".
//! `ad.schema` defines the few Active Directory attributes a sync reads (sAMAccountName,
//! userAccountControl, userPrincipalName, objectCategory) and an objectClass `user`, under a
//! private test OID arc, so the same server serves AD-shaped entries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The suffix every test directory has.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The service account a sync binds as.
pub const READER_DN: &str = "cn=reader,dc=example,dc=org";
pub const READER_PASSWORD: &str = "reader-secret";

const AD_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'sAMAccountName'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'userAccountControl'
\tEQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'userPrincipalName'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'objectCategory'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'user' SUP inetOrgPerson STRUCTURAL
\tMUST sAMAccountName MAY ( userAccountControl $ userPrincipalName $ objectCategory ) )
";

/// A running slapd; killed (and its directory removed) on drop.
pub struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    /// `ldap://127.0.0.1:PORT`
    pub url: String,
    /// `ldaps://localhost:PORT` when started with a certificate.
    pub ldaps_url: Option<String>,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base entries: the suffix, `ou=People` and the reader account.
pub fn base_ldif() -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=People,{SUFFIX}\nobjectClass: organizationalUnit\nou: People\n\n\
         dn: {READER_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: reader\nsn: reader\n\
         userPassword: {READER_PASSWORD}\n\n"
    )
}

fn need(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's slapd and ldap-utils (`.ci/prereqs test`, or apt-get install slapd ldap-utils)"
    );
}

impl Slapd {
    /// slapd serving [`base_ldif`] plus `entries` (LDIF), and LDAPS too when given a (chain, key).
    pub async fn start(entries: &str, tls: Option<(&str, &str)>) -> Slapd {
        need("/usr/sbin/slapd");
        need("/usr/sbin/slapadd");
        need("/usr/bin/ldapwhoami");
        let dir = tempfile::tempdir().expect("slapd temp dir");
        let p = dir.path();
        std::fs::create_dir(p.join("db")).unwrap();
        std::fs::write(p.join("ad.schema"), AD_SCHEMA).unwrap();
        let mut tls_conf = String::new();
        if let Some((chain, key)) = tls {
            std::fs::write(p.join("server.crt"), chain).unwrap();
            std::fs::write(p.join("server.key"), key).unwrap();
            tls_conf = format!(
                "TLSCertificateFile {0}/server.crt\nTLSCertificateKeyFile {0}/server.key\n",
                p.display()
            );
        }
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             include {d}/ad.schema\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n{tls_conf}\
             sizelimit size.soft=1000 size.hard=1000 size.prtotal=unlimited\n\
             database mdb\nmaxsize 104857600\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw admin-secret\ndirectory {d}/db\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by users read by * none\n",
            d = p.display()
        );
        std::fs::write(p.join("slapd.conf"), conf).unwrap();
        std::fs::write(p.join("data.ldif"), format!("{}{entries}", base_ldif())).unwrap();
        let out = Command::new("/usr/sbin/slapadd")
            .args(["-q", "-f"])
            .arg(p.join("slapd.conf"))
            .arg("-l")
            .arg(p.join("data.ldif"))
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let mut listen = format!("{url}/");
        let ldaps_url = tls.map(|_| {
            let port = super::free_port();
            listen.push_str(&format!(" ldaps://127.0.0.1:{port}/"));
            format!("ldaps://localhost:{port}")
        });
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(p.join("slapd.conf"))
            .args(["-h", &listen, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p.join("slapd.log")).unwrap())
            .spawn()
            .expect("spawn slapd");
        let slapd = Slapd {
            child,
            dir,
            url,
            ldaps_url,
        };
        let url = slapd.url.clone();
        super::eventually("slapd answers a bind", || {
            let url = url.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    Command::new("/usr/bin/ldapwhoami")
                        .args(["-x", "-H", &url, "-D", READER_DN, "-w", READER_PASSWORD])
                        .output()
                        .ok()
                        .filter(|o| o.status.success())
                        .map(drop)
                })
                .await
                .unwrap()
            }
        })
        .await;
        slapd
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Change the directory while it runs (`ldapmodify` as the root DN).
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("/usr/bin/ldapmodify")
            .args([
                "-x",
                "-H",
                &self.url,
                "-D",
                &format!("cn=admin,{SUFFIX}"),
                "-w",
                "admin-secret",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapmodify");
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}
