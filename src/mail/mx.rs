//! Direct delivery to a recipient domain's mail exchangers (RFC 5321 section 5, spec "Direct MX").
//!
//! MX records by preference (hickory), else the domain's own A/AAAA; a null MX (RFC 7505) or a
//! domain that does not exist fails for good, a DNS failure is temporary. STARTTLS is opportunistic,
//! as Postfix's `may` level: used when offered, certificates not verified (MX names are not
//! authenticated without DANE or MTA-STS anyway), and if the TLS handshake fails the same host is
//! tried once more in plaintext. The next host is tried after a connection or temporary failure; a
//! 5xx ends the attempt.

use std::net::SocketAddr;

use lettre::address::Envelope;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;

use super::client::Failure;
use super::client::{self, Secure};
use crate::dns::{Dns, MailHosts};

pub async fn send(
    dns: &Dns,
    port: u16,
    hello: &ClientId,
    domain: &str,
    envelope: &Envelope,
    body: &[u8],
) -> Result<(), Failure> {
    let hosts = match dns.mail_hosts(domain).await {
        Ok(MailHosts::Hosts(h)) => h,
        Ok(MailHosts::NullMx) => {
            return Err(Failure::Permanent(format!(
                "556 5.1.10 {domain} accepts no mail (null MX)"
            )))
        }
        Ok(MailHosts::NoDomain) => {
            return Err(Failure::Permanent(format!(
                "550 5.1.2 {domain} does not exist (NXDOMAIN)"
            )))
        }
        Err(e) => return Err(Failure::Temporary(format!("MX lookup of {domain} failed: {e}"))),
    };
    let mut last = Failure::Temporary(format!("no mail exchanger of {domain} could be reached"));
    for host in &hosts {
        let addrs = match dns.lookup_ip(host).await {
            Ok(r) => r.addrs,
            Err(e) => {
                last = Failure::Temporary(format!("{host}: {e}"));
                continue;
            }
        };
        for ip in addrs {
            match attempt(SocketAddr::new(ip, port), host, hello, envelope, body).await {
                Ok(()) => return Ok(()),
                Err(Failure::Permanent(e)) => return Err(Failure::Permanent(format!("{host}[{ip}]: {e}"))),
                Err(Failure::Temporary(e)) => {
                    tracing::debug!(host, %ip, error = %e, "mail exchanger failed; trying the next");
                    last = Failure::Temporary(format!("{host}[{ip}]: {e}"));
                }
            }
        }
    }
    Err(last)
}

/// One host: plaintext connect, STARTTLS if offered, plaintext again if the handshake fails.
async fn attempt(
    addr: SocketAddr,
    host: &str,
    hello: &ClientId,
    envelope: &Envelope,
    body: &[u8],
) -> Result<(), Failure> {
    let mut conn = client::connect(addr, hello, Secure::None).await?;
    if conn.can_starttls() {
        let params = TlsParameters::builder(host.to_string())
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true)
            .build_rustls()
            .map_err(|e| Failure::Temporary(e.to_string()))?;
        if let Err(e) = conn.starttls(params, hello).await {
            tracing::info!(host, %addr, error = %e, "STARTTLS failed; retrying in plaintext");
            conn = client::connect(addr, hello, Secure::None).await?;
        }
    }
    let result = client::send(&mut conn, envelope, body).await;
    if result.is_ok() {
        let _ = conn.quit().await;
    }
    result
}
