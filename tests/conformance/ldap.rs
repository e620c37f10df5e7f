//! `ldap://` against the binary's slapd with syncprov (an organizational
//! unit per test; the outage check has a server of its own), with
//! whole-config `applicationProcess` entries (`cn` the name, `description`
//! the config).

use crate::checks::{Bad, BadItems, Driver, Family, Outage, Secret};
use crate::common::uwsgi_ini;
use crate::servers::{LdapClient, Slapd, READER};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An organizational unit of its own on a server, and a client on it.
pub struct Ldap {
    server: Arc<Slapd>,
    ou: String,
    client: LdapClient,
    /// The entries put and not deleted, by `cn`.
    entries: BTreeSet<String>,
    /// How many times the unrelated entry was changed.
    noops: usize,
    /// Holds the password file of [`Secret::uris_with`].
    dir: tempfile::TempDir,
}

impl Ldap {
    fn on(server: Arc<Slapd>) -> Self {
        static UNITS: AtomicUsize = AtomicUsize::new(0);
        let mut client = server.client();
        let ou = client.add_ou(&format!("conformance{}", UNITS.fetch_add(1, Ordering::Relaxed)));
        let unrelated = format!("cn=unrelated,{ou}");
        client.add(&unrelated, &[("objectClass", &["organizationalRole"]), ("cn", &["unrelated"])]);
        let dir = tempfile::tempdir().expect("tempdir");
        Ldap { server, ou, client, entries: BTreeSet::new(), noops: 0, dir }
    }

    fn shared() -> Self {
        Self::on(Slapd::shared())
    }

    fn private() -> Self {
        Self::on(Arc::new(Slapd::private()))
    }

    fn dn(&self, cn: &str) -> String {
        format!("cn={cn},{}", self.ou)
    }

    /// The URI of the whole-config entries under the unit, with `ext`.
    fn uri_with(&self, ext: &str) -> String {
        format!("{}/{}??one?(objectClass=applicationProcess)?x-config=description{ext}", self.server.url(), self.ou)
    }

    /// Adds a whole-config entry the driver does not track.
    fn add(&mut self, cn: &str, configs: &[&str]) {
        let dn = self.dn(cn);
        let attrs: &[(&str, &[&str])] =
            &[("objectClass", &["applicationProcess"]), ("cn", &[cn]), ("description", configs)];
        let attrs = if configs.is_empty() { &attrs[..2] } else { attrs };
        self.client.add(&dn, attrs);
    }

    fn slapd(&mut self) -> &mut Slapd {
        Arc::get_mut(&mut self.server).expect("the outage check has a server of its own")
    }
}

impl Driver for Ldap {
    const FAMILY: Family = Family::Snapshot;

    fn uri(&self) -> String {
        self.uri_with("")
    }

    fn put(&mut self, base: &str, tag: &str) {
        let config = uwsgi_ini(&format!("# {tag}"));
        if self.entries.contains(base) {
            let dn = self.dn(base);
            self.client.replace(&dn, "description", &[&config]);
        } else {
            self.add(base, &[&config]);
            self.entries.insert(base.to_owned());
        }
    }

    fn delete(&mut self, base: &str) {
        let dn = self.dn(base);
        self.client.delete(&dn);
        self.entries.remove(base);
    }

    /// A change to an attribute the source does not map, on every entry
    /// put (each sent again by syncrepl), and to an entry outside the filter.
    fn noop(&mut self) {
        self.noops += 1;
        let locality = format!("noop {}", self.noops);
        for cn in self.entries.clone() {
            let dn = self.dn(&cn);
            self.client.replace(&dn, "l", &[&locality]);
        }
        let unrelated = self.dn("unrelated");
        self.client.replace(&unrelated, "description", &[&locality]);
    }
}

impl BadItems for Ldap {
    /// One bad entry of each kind after `good.ini`, and a good YAML entry
    /// among them.
    fn put_bad(&mut self) -> Bad {
        let good = uwsgi_ini("# good");
        self.add("../evil", &[&good]);
        self.add("multi", &["[uwsgi]", "a = 1"]);
        self.add("noconf", &[]);
        self.add("also-good.yaml", &["uwsgi:\n  master: true\n"]);
        let warnings = [
            ("../evil.ini", Some("path separator")),
            ("cn=multi", Some("several values")),
            ("cn=noconf", Some("config is NULL or missing")),
        ];
        Bad { items: 3, refused: "", warnings: warnings.map(|(n, s)| (n.to_owned(), s)).into() }
    }

    fn good_config(&self) -> Option<String> {
        Some(uwsgi_ini("# good"))
    }

    fn also_good(&self) -> Vec<String> {
        vec!["also-good.yaml".into()]
    }
}

impl Outage for Ldap {
    const NOTICE: &'static str = "failed; running vassals are kept";
    const RECOVERED: Option<&'static str> = Some("source recovered");

    fn stop(&mut self) {
        self.slapd().kill();
    }

    /// Back on the unix socket only: the source (TCP) still cannot connect.
    fn cut_off(&mut self) -> bool {
        self.slapd().restart(false);
        true
    }

    fn restart(&mut self) {
        self.slapd().restart(true);
    }
}

impl Secret for Ldap {
    /// A bind password from a file, wrong, so the bind is refused. The
    /// other way, `$EMPEROR_LDAP_PASSWORD`, is read by the same bind; it is
    /// not set here: `setenv` is unsound while other threads of the binary
    /// may read the environment.
    fn uris_with(&self, secret: &str) -> Vec<String> {
        let file = self.dir.path().join("ldap.pw");
        std::fs::write(&file, format!("{secret}\n")).expect("write the password file");
        let bind = format!(",bindname={}", READER.replace(',', "%2C"));
        vec![self.uri_with(&format!("{bind},x-password-file={}", file.display()))]
    }

    /// A password in the URI is refused, in every form.
    fn refused_with(&self, secret: &str) -> Vec<String> {
        let port = self.server.port;
        vec![
            self.uri_with(&format!(",x-bindpw={secret}")),
            self.uri_with(&format!(",credentials={secret}")),
            format!("ldap://reader:{secret}@127.0.0.1:{port}/{}", self.ou),
        ]
    }
}

mod shared {
    conformance!(super::Ldap::shared() =>
        first_events, ends_within_a_second_of_shutdown, create_change_delete, unchanged_state_sends_nothing,
        bad_item_reported_once, no_secret_in_ids_or_logs);
}

mod private {
    conformance!(super::Ldap::private() => outage_removes_nothing);
}
