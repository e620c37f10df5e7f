//! A private OpenLDAP slapd (its own cn=config, one mdb database with the
//! shipped `deploy/ldap/uwsgi-schema.ldif`, syncprov unless asked not to,
//! optionally TLS with a certificate made for the test) and a blocking
//! client to change it.

use super::{free_port, pid_alive, runtime, shared, wait_for};
use ldap3::{LdapConnAsync, Mod, Scope};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The suffix of the test database.
pub const SUFFIX: &str = "dc=emperor,dc=test";
/// Its root DN (bypasses every limit and ACL).
pub const ADMIN: &str = "cn=admin,dc=emperor,dc=test";
/// The root DN's password.
pub const PASSWORD: &str = "secret";
/// A read-only user for the emperor to bind as.
pub const READER: &str = "cn=reader,dc=emperor,dc=test";
/// The reader's password.
pub const READER_PASSWORD: &str = "reader-pw";

/// What the server offers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SlapdOptions {
    /// No syncprov overlay: the root DSE lacks the RFC 4533 control.
    pub no_syncprov: bool,
    /// Also listen on `ldaps://` and accept StartTLS, with a certificate
    /// signed by a CA of the test ([`Slapd::ca_file`]).
    pub tls: bool,
    /// A size limit for everyone but the root DN (default unlimited).
    pub size_limit: Option<u32>,
}

/// A private slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    opts: SlapdOptions,
    /// Its `ldap://` port on 127.0.0.1.
    pub port: u16,
    /// Its `ldaps://` port on 127.0.0.1, with [`SlapdOptions::tls`].
    pub tls_port: u16,
    child: Option<Child>,
}

static SHARED_SLAPD: Mutex<Weak<Slapd>> = Mutex::new(Weak::new());

fn slapd_bin() -> &'static str {
    for bin in ["/usr/sbin/slapd", "/usr/sbin/slapadd"] {
        assert!(
            Path::new(bin).exists(),
            "{bin} not found: run deploy/install-test-deps.sh (it installs the Debian package slapd)"
        );
    }
    "/usr/sbin/slapd"
}

impl Slapd {
    /// The syncprov server shared by this test binary (each test uses its
    /// own organizational unit, see [`LdapClient::add_ou`]).
    pub fn shared() -> Arc<Slapd> {
        shared(&SHARED_SLAPD, Slapd::private)
    }

    /// A syncprov server of the caller's own.
    pub fn private() -> Slapd {
        Slapd::with(SlapdOptions::default())
    }

    /// A server of the caller's own with `opts`.
    pub fn with(opts: SlapdOptions) -> Slapd {
        let bin = slapd_bin();
        let dir = tempfile::Builder::new().prefix("emperor-slapd-").tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("db")).expect("db dir");
        fs::create_dir_all(dir.path().join("slapd.d")).expect("slapd.d dir");
        let mut s = Slapd { dir, opts, port: 0, tls_port: 0, child: None };
        if opts.tls {
            s.make_certificates();
        }
        fs::write(s.path("config.ldif"), s.config_ldif()).expect("write config.ldif");
        let out = Command::new("/usr/sbin/slapadd")
            .args(["-q", "-n", "0", "-F"])
            .arg(s.path("slapd.d"))
            .arg("-l")
            .arg(s.path("config.ldif"))
            .stdin(Stdio::null())
            .output()
            .expect("run slapadd");
        assert!(out.status.success(), "slapadd of cn=config failed: {}", String::from_utf8_lossy(&out.stderr));
        for _ in 0..5 {
            s.port = free_port();
            s.tls_port = if opts.tls { free_port() } else { 0 };
            if s.try_start(bin, true) {
                s.client().populate();
                return s;
            }
        }
        panic!("slapd did not start; log:\n{}", s.log());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("slapd.log")).unwrap_or_default()
    }

    /// The `ldap://` URL (no trailing slash).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The `ldaps://` URL (no trailing slash).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.pem")
    }

    fn ldapi_url(&self) -> String {
        let path = self.path("ldapi");
        format!("ldapi://{}", path.to_str().expect("utf-8 temp path").replace('/', "%2F"))
    }

    fn make_certificates(&self) {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| {
                    panic!("run openssl ({e}): run deploy/install-test-deps.sh (Debian package openssl)")
                });
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let days = ["-days", "2"];
        openssl(
            &[
                &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"][..],
                &days,
                &["-subj", "/CN=emperor test CA"],
            ]
            .concat(),
        );
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        fs::write(self.path("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext.cnf");
        openssl(
            &[
                &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"][..],
                &["-out", "server.pem", "-extfile", "ext.cnf"],
                &days,
            ]
            .concat(),
        );
    }

    fn config_ldif(&self) -> String {
        let d = self.dir.path().display();
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ldap/uwsgi-schema.ldif");
        let mut ldif = format!("dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {d}/slapd.pid\n");
        if self.opts.tls {
            let _ = write!(
                ldif,
                "olcTLSCACertificateFile: {d}/ca.pem\nolcTLSCertificateFile: {d}/server.pem\n\
                 olcTLSCertificateKeyFile: {d}/server.key\n"
            );
        }
        let modules = if self.opts.no_syncprov { "" } else { "olcModuleLoad: syncprov\n" };
        let limit = self.opts.size_limit.map_or("unlimited".to_owned(), |n| n.to_string());
        let _ = write!(
            ldif,
            "\ndn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
             olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n{modules}\n\
             dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
             include: file:///etc/ldap/schema/core.ldif\n\
             include: file:///etc/ldap/schema/cosine.ldif\n\
             include: file:///etc/ldap/schema/nis.ldif\n\
             include: file://{schema}\n\n\
             dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\nolcSizeLimit: {limit}\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n\
             olcDatabase: {{1}}mdb\nolcSuffix: {SUFFIX}\nolcRootDN: {ADMIN}\nolcRootPW: {PASSWORD}\n\
             olcDbDirectory: {d}/db\nolcDbMaxSize: 104857600\nolcDbNoSync: TRUE\n\
             olcDbIndex: objectClass eq\nolcDbIndex: entryCSN,entryUUID eq\n\
             olcSizeLimit: {limit}\nolcAccess: to * by * read\n",
            schema = schema.display(),
        );
        if !self.opts.no_syncprov {
            ldif.push_str(
                "\ndn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config\nobjectClass: olcOverlayConfig\n\
                 objectClass: olcSyncProvConfig\nolcOverlay: {0}syncprov\nolcSpCheckpoint: 100 10\n\
                 olcSpSessionLog: 100\n",
            );
        }
        ldif
    }

    /// Starts slapd (`tcp`: also on its TCP ports, else only on its unix
    /// socket); `false` if it did not come up.
    fn try_start(&mut self, bin: &str, tcp: bool) -> bool {
        let mut urls = self.ldapi_url();
        if tcp {
            let _ = write!(urls, " ldap://127.0.0.1:{}/", self.port);
            if self.opts.tls {
                let _ = write!(urls, " ldaps://127.0.0.1:{}/", self.tls_port);
            }
        }
        let log = fs::OpenOptions::new().create(true).append(true).open(self.path("slapd.log")).expect("log");
        // -d 0: stay in the foreground, so the child is slapd itself.
        let child = Command::new(bin)
            .arg("-F")
            .arg(self.path("slapd.d"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn slapd");
        let mut slot = None;
        let up = super::started(&mut slot, child, || self.answers());
        self.child = slot;
        up
    }

    /// Whether the root DSE can be read over the unix socket.
    fn answers(&self) -> bool {
        let url = self.ldapi_url();
        runtime().block_on(async {
            let Ok((conn, mut ldap)) = LdapConnAsync::new(&url).await else { return false };
            ldap3::drive!(conn);
            let ok = ldap.search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"]).await.is_ok();
            let _ = ldap.unbind().await;
            ok
        })
    }

    /// Starts it again after [`Slapd::kill`]; `tcp: false` keeps the emperor
    /// (which connects over TCP) out while the test changes data through
    /// the unix socket.
    pub fn restart(&mut self, tcp: bool) {
        assert!(self.try_start(slapd_bin(), tcp), "slapd did not restart; log:\n{}", self.log());
    }

    /// Kills slapd at once (SIGKILL: no clean disconnects) and waits until
    /// it is gone.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id() as i32;
        let _ = child.kill();
        let _ = child.wait();
        wait_for("slapd to exit", || !pid_alive(pid));
    }

    /// The database as LDIF (`slapcat`), CSNs and entryUUIDs included.
    pub fn backup(&self) -> String {
        let out = Command::new("/usr/sbin/slapcat")
            .arg("-F")
            .arg(self.path("slapd.d"))
            .args(["-n", "1"])
            .stdin(Stdio::null())
            .output()
            .expect("run slapcat");
        assert!(out.status.success(), "slapcat failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 LDIF")
    }

    /// Kills the server, replaces its database with `backup` (a directory
    /// restored from an older backup: its consumers' sync cookies are
    /// ahead of it) and starts it again.
    pub fn restore(&mut self, backup: &str) {
        self.kill();
        let db = self.path("db");
        fs::remove_dir_all(&db).expect("remove the database");
        fs::create_dir_all(&db).expect("db dir");
        fs::write(self.path("backup.ldif"), backup).expect("write backup.ldif");
        let out = Command::new("/usr/sbin/slapadd")
            .arg("-F")
            .arg(self.path("slapd.d"))
            .args(["-q", "-n", "1", "-l"])
            .arg(self.path("backup.ldif"))
            .stdin(Stdio::null())
            .output()
            .expect("run slapadd");
        assert!(out.status.success(), "slapadd of the backup failed: {}", String::from_utf8_lossy(&out.stderr));
        self.restart(true);
    }

    /// A client bound as the root DN over the unix socket (works while TCP
    /// is off).
    pub fn client(&self) -> LdapClient {
        LdapClient::connect(self.ldapi_url())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking LDAP client for the test side, bound as the root DN;
/// reconnects after the server restarted.
pub struct LdapClient {
    rt: tokio::runtime::Runtime,
    url: String,
    ldap: Option<ldap3::Ldap>,
}

/// An entry's attributes: `(name, values)`.
pub type Attrs<'a> = &'a [(&'a str, &'a [&'a str])];

impl LdapClient {
    fn connect(url: String) -> LdapClient {
        let mut c = LdapClient { rt: runtime(), url, ldap: None };
        c.reconnect();
        c
    }

    fn reconnect(&mut self) {
        let ldap = self.rt.block_on(async {
            let (conn, mut ldap) = LdapConnAsync::new(&self.url).await?;
            ldap3::drive!(conn);
            ldap.simple_bind(ADMIN, PASSWORD).await?.success()?;
            Ok::<_, ldap3::LdapError>(ldap)
        });
        self.ldap = Some(ldap.unwrap_or_else(|e| panic!("connect {}: {e}", self.url)));
    }

    /// Runs `op` (reconnecting once if the server restarted), panicking
    /// with `what` on an LDAP error.
    fn run<F, Fut>(&mut self, what: &str, op: F)
    where
        F: Fn(ldap3::Ldap) -> Fut,
        Fut: std::future::Future<Output = ldap3::result::Result<ldap3::LdapResult>>,
    {
        for attempt in 0..2 {
            let ldap = self.ldap.clone().expect("connected");
            match self.rt.block_on(op(ldap)) {
                Ok(res) if res.rc == 0 => return,
                Ok(res) => panic!("{what}: {res}"),
                Err(_) if attempt == 0 => self.reconnect(),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    /// Adds the entry `dn` with `attrs`.
    pub fn add(&mut self, dn: &str, attrs: Attrs) {
        let owned: Vec<(String, HashSet<String>)> = attrs
            .iter()
            .map(|(name, values)| (name.to_string(), values.iter().map(|v| v.to_string()).collect()))
            .collect();
        self.run(&format!("add {dn}"), |mut l| {
            let owned = owned.clone();
            async move { l.add(dn, owned).await }
        });
    }

    /// Replaces every value of `attr` of `dn` with `values` (none: removes
    /// the attribute).
    pub fn replace(&mut self, dn: &str, attr: &str, values: &[&str]) {
        let set: HashSet<String> = values.iter().map(|v| v.to_string()).collect();
        self.run(&format!("modify {dn}"), |mut l| {
            let set = set.clone();
            async move { l.modify(dn, vec![Mod::Replace(attr.to_owned(), set)]).await }
        });
    }

    /// Deletes the entry `dn`.
    pub fn delete(&mut self, dn: &str) {
        self.run(&format!("delete {dn}"), |mut l| async move { l.delete(dn).await });
    }

    /// Creates `ou=NAME` under the suffix and returns its DN.
    pub fn add_ou(&mut self, name: &str) -> String {
        let dn = format!("ou={name},{SUFFIX}");
        self.add(&dn, &[("objectClass", &["organizationalUnit"]), ("ou", &[name])]);
        dn
    }

    /// The suffix entry and the reader user.
    fn populate(&mut self) {
        self.add(SUFFIX, &[("objectClass", &["dcObject", "organization"]), ("o", &["emperor"]), ("dc", &["emperor"])]);
        self.add(
            READER,
            &[
                ("objectClass", &["applicationProcess", "simpleSecurityObject"]),
                ("cn", &["reader"]),
                ("userPassword", &[READER_PASSWORD]),
            ],
        );
    }
}
