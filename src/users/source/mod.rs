//! Where users come from: a directory ([`ldap`]) or a CSV file ([`csv`]). Both yield
//! [`SourceUser`](crate::users::plan::SourceUser)s in the source's order; Mattermost's rules are
//! applied later, by the plan.

pub mod csv;
pub mod ldap;
