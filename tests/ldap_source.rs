//! `ldap://` against a real OpenLDAP slapd: the private test server itself
//! (syncprov advertised or not, TLS).

mod common;
mod servers;

use ldap3::{LdapConnAsync, Scope, SearchEntry};
use servers::{Slapd, SlapdOptions};

/// The RFC 4533 content synchronization control.
const SYNC_CONTROL: &str = "1.3.6.1.4.1.4203.1.9.1.1";

fn root_dse_controls(url: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
        ldap3::drive!(conn);
        let (entries, _) =
            ldap.search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"]).await.unwrap().success().unwrap();
        let dse = SearchEntry::construct(entries.into_iter().next().expect("root DSE"));
        dse.attrs.get("supportedControl").cloned().unwrap_or_default()
    })
}

#[test]
fn test_server_offers_syncrepl_unless_asked_not_to() {
    let with = Slapd::shared();
    assert!(root_dse_controls(&with.url()).iter().any(|c| c == SYNC_CONTROL));
    let without = Slapd::with(SlapdOptions { no_syncprov: true, ..Default::default() });
    assert!(!root_dse_controls(&without.url()).iter().any(|c| c == SYNC_CONTROL));
}
