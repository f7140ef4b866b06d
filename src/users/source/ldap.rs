//! The LDAP source: a simple bind, then a paged search (RFC 2696) of the users under `base_dn`.
//!
//! Paging matters: Active Directory answers at most 1,000 entries to one search (MaxPageSize),
//! OpenLDAP 500 by default (`sizelimit`), and refuses the rest with "size limit exceeded".
//! LDAPS and StartTLS go through rustls with the system's roots plus `ca_file`.

use std::collections::HashSet;
use std::sync::Arc;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::users::config::{LdapConfig, Schema};
use crate::users::plan::SourceUser;

/// Why the directory could not be read. Never contains the bind password.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("[users.ldap] ca_file: {0}")]
    Tls(#[from] crate::tls::client::ClientTlsError),
    #[error("cannot connect to {url}: {reason}: is the directory running, and is [users.ldap] url right?")]
    Connect { url: String, reason: String },
    #[error(
        "the directory at {url} refused the bind as `{dn}`: {reason}: check [users.ldap] bind_dn and the \
         password in bind_password_file"
    )]
    Bind { url: String, dn: String, reason: String },
    #[error(
        "the directory did not answer the search of {base} within {} s ([users.ldap] timeout): is it \
         overloaded, or is a firewall dropping the connection?",
        timeout.as_secs()
    )]
    Stalled {
        base: String,
        timeout: std::time::Duration,
    },
    #[error("searching {base} with {filter} failed: {reason}: check [users.ldap] base_dn and filter")]
    Search {
        base: String,
        filter: String,
        reason: String,
    },
}

/// The attribute names of one convention.
struct Attributes {
    username: &'static str,
    email: &'static [&'static str],
    first: &'static str,
    last: &'static [&'static str],
    default_filter: &'static str,
}

fn attributes(schema: Schema) -> Attributes {
    match schema {
        Schema::OpenLdap => Attributes {
            username: "uid",
            email: &["mail"],
            first: "givenName",
            last: &["sn", "cn"],
            default_filter: "(objectClass=inetOrgPerson)",
        },
        Schema::Ad => Attributes {
            username: "sAMAccountName",
            email: &["mail", "userPrincipalName"],
            first: "givenName",
            last: &["sn"],
            default_filter: "(&(objectCategory=person)(objectClass=user))",
        },
    }
}

/// AD's userAccountControl flag ACCOUNTDISABLE.
const UAC_ACCOUNTDISABLE: u32 = 0x2;

/// The filter the search uses: `[users.ldap] filter`, else the schema's.
pub fn filter(cfg: &LdapConfig) -> String {
    cfg.filter
        .clone()
        .unwrap_or_else(|| attributes(cfg.schema).default_filter.to_string())
}

/// Every user entry under `base_dn`, in the directory's order.
pub async fn read(cfg: &LdapConfig, bind_password: Option<&str>) -> Result<Vec<SourceUser>, LdapError> {
    let url = cfg.url.value.clone();
    let tls = crate::tls::client::config(cfg.ca_file.as_ref().map(|c| c.value.as_path()), &[])?;
    let settings = LdapConnSettings::new()
        .set_conn_timeout(cfg.timeout)
        .set_starttls(cfg.starttls)
        .set_config(Arc::new(tls));
    let connect = |e: ldap3::LdapError| LdapError::Connect {
        url: url.clone(),
        reason: e.to_string(),
    };
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(connect)?;
    ldap3::drive!(conn);
    ldap.with_timeout(cfg.timeout);
    if let (Some(dn), Some(pw)) = (&cfg.bind_dn, bind_password) {
        let bind = |e: ldap3::LdapError| LdapError::Bind {
            url: url.clone(),
            dn: dn.clone(),
            reason: e.to_string(),
        };
        ldap.simple_bind(dn, pw)
            .await
            .map_err(bind)?
            .success()
            .map_err(bind)?;
    }
    let a = attributes(cfg.schema);
    let base = cfg.base_dn.as_ref().map(|b| b.value.clone()).unwrap_or_default();
    let filter = filter(cfg);
    let mut wanted: Vec<&str> = vec![a.username, a.first];
    wanted.extend(a.email);
    wanted.extend(a.last);
    if cfg.schema == Schema::Ad {
        wanted.push("userAccountControl");
    }
    if let Some(attr) = &cfg.disabled_attribute {
        wanted.push(attr);
    }
    let entries = search(&mut ldap, cfg.timeout, cfg.page_size, &base, &filter, &wanted).await?;
    // Entries matching disabled_filter, by DN: one more search, for the DNs only.
    let disabled_dns: HashSet<String> = match &cfg.disabled_filter {
        Some(df) => search(
            &mut ldap,
            cfg.timeout,
            cfg.page_size,
            &base,
            &format!("(&{filter}{df})"),
            &["1.1"],
        )
        .await?
        .into_iter()
        .map(|e| e.dn.to_ascii_lowercase())
        .collect(),
        None => HashSet::new(),
    };
    let _ = ldap.unbind().await;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let username = first(&e, &[a.username])?;
            let uac_disabled = cfg.schema == Schema::Ad
                && first(&e, &["userAccountControl"])
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .is_some_and(|v| v & UAC_ACCOUNTDISABLE != 0);
            let attr_disabled = cfg
                .disabled_attribute
                .as_deref()
                .is_some_and(|attr| first(&e, &[attr]).is_some());
            Some(SourceUser {
                username,
                email: first(&e, a.email).unwrap_or_default(),
                first_name: first(&e, &[a.first]).unwrap_or_default(),
                last_name: first(&e, a.last).unwrap_or_default(),
                disabled: uac_disabled || attr_disabled || disabled_dns.contains(&e.dn.to_ascii_lowercase()),
            })
        })
        .collect())
}

/// One paged subtree search.
/// Every page of one paged search. `timeout` bounds each step: ldap3's own timeout covers only the
/// next operation it is set for (the bind uses it up), not the pages a paged search asks for later.
async fn search(
    ldap: &mut ldap3::Ldap,
    timeout: std::time::Duration,
    page_size: i32,
    base: &str,
    filter: &str,
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, LdapError> {
    let err = |e: ldap3::LdapError| match e {
        ldap3::LdapError::Timeout { .. } => LdapError::Stalled {
            base: base.to_string(),
            timeout,
        },
        e => LdapError::Search {
            base: base.to_string(),
            filter: filter.to_string(),
            reason: e.to_string(),
        },
    };
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(page_size)),
    ];
    let stalled = |_| LdapError::Stalled {
        base: base.to_string(),
        timeout,
    };
    let mut stream = tokio::time::timeout(
        timeout,
        ldap.with_timeout(timeout).streaming_search_with(
            adapters,
            base,
            Scope::Subtree,
            filter,
            attrs.to_vec(),
        ),
    )
    .await
    .map_err(stalled)?
    .map_err(err)?;
    let mut out = Vec::new();
    while let Some(entry) = tokio::time::timeout(timeout, stream.next())
        .await
        .map_err(stalled)?
        .map_err(err)?
    {
        out.push(SearchEntry::construct(entry));
    }
    tokio::time::timeout(timeout, stream.finish())
        .await
        .map_err(stalled)?
        .success()
        .map_err(err)?;
    Ok(out)
}

/// The first value of the first of `names` the entry has (attribute names are case-insensitive).
fn first(e: &SearchEntry, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        e.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .and_then(|(_, v)| v.first())
            .filter(|v| !v.trim().is_empty())
            .cloned()
    })
}
