//! The cluster configuration applied to a host's root filesystem before the handoff: the
//! cluster's `/etc/hosts`, its users (accounts, SSH keys, password hashes), root's SSH keys and
//! password, the Xen bridge's addressing, DNS and NTP.
//!
//! The inputs are plain structs ([`Plan`] and its parts), not the configuration schema: the
//! caller maps the schema onto them. Every file is a pure function of the plan and of the root
//! filesystem's own `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/gshadow` (the
//! `render_` functions and [`add_users`]), so the same configuration and the same machine give
//! byte-identical files: nothing depends on the date, the order users are listed in, or the
//! order a directory is read in. [`apply`] writes them into the new root.
//!
//! Choices worth knowing:
//! - **Ids.** Users get uid = gid (a group of their own, as Debian's `adduser` does), counted
//!   from 1000 in user-name order and skipping every id the root filesystem already uses as a
//!   uid or gid, so every host of a cluster with the same root filesystem gives a user the
//!   same ids (files copied between hosts keep their owner).
//! - **Shadow's "last change" field is empty.** The usual value, days since 1970 of the last
//!   password change, would make the file depend on the day it is written; `0` would mean
//!   "must change the password at next login". An empty field disables password aging, which
//!   is right for a password that lives in the cluster configuration and changes there.
//! - **A user the root filesystem already has is refused**, as is a user whose name is
//!   already a group: the configuration must not silently take over a system account such as
//!   `daemon` (or a user baked into a custom root filesystem).
//! - **Symbolic links in the new root are resolved inside it** (an absolute link such as
//!   `/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf` must not lead out of the new
//!   root into the initramfs), and a file that is a link is replaced, not written through.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::dom0::{self, Dom0Error};
use crate::net::mac::MacAddr;

/// The first uid and gid given to a configured user, as Debian's `adduser` (`FIRST_UID`).
pub const FIRST_ID: u32 = 1000;
/// The last uid and gid given to a configured user, as Debian's `adduser` (`LAST_UID`).
pub const LAST_ID: u32 = 59999;

/// The first line of every file PXEN writes from the configuration.
const HEADER: &str = "# Written by PXEN at every boot from the cluster configuration.\n";
/// Where systemd-timesyncd reads drop-ins.
const TIMESYNCD_DROP_IN: &str = "etc/systemd/timesyncd.conf.d/pxen.conf";
/// A configured user's login shell.
const SHELL: &str = "/bin/bash";
/// The shadow hash of a user without a password. Not `!`: OpenSSH run without PAM takes a
/// hash starting with `!` for a locked account and refuses its SSH keys too; no hash is `*`.
const NO_PASSWORD: &str = "*";
/// The files every new home starts with, as Debian's `adduser` copies them.
const SKEL: &str = "etc/skel";

/// A host of the cluster with a fixed address, for `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// Its short name.
    pub hostname: String,
    /// Its static address.
    pub address: Ipv4Addr,
}

/// A login account to add to the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// The user name.
    pub name: String,
    /// Supplementary groups (such as `sudo`); each must exist in the root filesystem.
    pub groups: Vec<String>,
    /// `authorized_keys` lines.
    pub ssh_keys: Vec<String>,
    /// A crypt(3) hash; `None` gives no password login (`*`: SSH keys still work).
    pub password_hash: Option<String>,
}

/// What the configuration says about root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootSpec {
    /// `authorized_keys` lines; none leaves `/root/.ssh` as the root filesystem has it.
    pub ssh_keys: Vec<String>,
    /// A crypt(3) hash for root; `None` leaves root's password as the root filesystem has it
    /// (locked, `*`, in Debian's).
    pub password_hash: Option<String>,
}

/// How the Xen bridge gets its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressingSpec {
    /// From the LAN's DHCP server, with the MAC address as client identifier.
    #[default]
    Dhcp,
    /// A fixed address.
    Static {
        /// The address.
        address: Ipv4Addr,
        /// The subnet's prefix length (24 for a /24).
        prefix: u8,
        /// The default gateway, if any.
        gateway: Option<Ipv4Addr>,
    },
}

/// The host's network as systemd-networkd, resolv.conf and systemd-timesyncd see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The Xen bridge's name.
    pub bridge: String,
    /// How the bridge gets its address.
    pub addressing: AddressingSpec,
    /// DNS servers (IPv4 addresses); empty: those the DHCP server gives.
    pub dns: Vec<String>,
    /// DNS search domains.
    pub search: Vec<String>,
    /// NTP servers; empty: systemd-timesyncd's own defaults.
    pub ntp: Vec<String>,
}

impl Default for NetworkSpec {
    /// The network PXEN sets up without a configuration: the bridge [`dom0::BRIDGE`] by DHCP.
    fn default() -> NetworkSpec {
        NetworkSpec {
            bridge: dom0::BRIDGE.to_string(),
            addressing: AddressingSpec::Dhcp,
            dns: Vec::new(),
            search: Vec::new(),
            ntp: Vec::new(),
        }
    }
}

/// The network card that carries the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// Its permanent MAC address.
    pub mac: MacAddr,
    /// The name the kernel gave it (`eth0`).
    pub name: String,
}

/// Everything applied to one host's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// This host's short name.
    pub hostname: String,
    /// The cluster's DNS domain: `/etc/hosts` then gives fully qualified names first.
    pub domain: Option<String>,
    /// The cluster's hosts with a static address.
    pub hosts: Vec<HostsEntry>,
    /// The accounts to add.
    pub users: Vec<UserSpec>,
    /// Root's keys and password.
    pub root: RootSpec,
    /// The network.
    pub network: NetworkSpec,
    /// The card carrying the bridge; `None` (no card found) writes no networkd files.
    pub uplink: Option<Uplink>,
}

/// An account added to the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// Its uid, which is also the gid of its own group.
    pub id: u32,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The accounts added, in name order.
    pub accounts: Vec<Account>,
    /// The files this module wrote, relative to the new root, in the order it wrote them (the
    /// networkd files, written by [`dom0::install_bridge`], are not listed).
    pub files: Vec<PathBuf>,
}

/// A step of applying the configuration that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An account file of the root filesystem could not be read.
    #[error("cannot read {path} in the new root: {source}; the root filesystem must have /etc/passwd, /etc/shadow and /etc/group")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of an account file does not have the fields it should.
    #[error("{file} line {line}: `{text}` is not a valid entry (expected {fields} fields separated by `:` and a numeric id); fix the root filesystem's {file}")]
    MalformedLine {
        /// The file (`/etc/passwd`, ...).
        file: &'static str,
        /// The 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// How many fields the file's lines have.
        fields: usize,
    },
    /// A configured user exists in the root filesystem already.
    #[error("user `{name}` already exists in the root filesystem's {file}; choose another name in the configuration's `users` (system accounts cannot be taken over)")]
    UserExists {
        /// The user name.
        name: String,
        /// The file it was found in (`/etc/passwd` or `/etc/group`).
        file: &'static str,
    },
    /// A user's supplementary group does not exist in the root filesystem.
    #[error("user `{user}` is to be in group `{group}`, which the root filesystem's /etc/group does not have; remove it from the user's `groups` or use a root filesystem that has it")]
    UnknownGroup {
        /// The user name.
        user: String,
        /// The group.
        group: String,
    },
    /// Every id from [`FIRST_ID`] to [`LAST_ID`] is taken.
    #[error("no free uid/gid between {FIRST_ID} and {LAST_ID} for user `{name}`; the root filesystem or the configuration has too many accounts")]
    NoFreeId {
        /// The user name.
        name: String,
    },
    /// A value would break the line-based file it goes into.
    #[error("{what} `{value}` contains a `:` or a line break, which would corrupt {file}; fix it in the configuration")]
    UnsafeValue {
        /// What the value is (a user name, a password hash, an SSH key).
        what: &'static str,
        /// The value.
        value: String,
        /// The file it goes into.
        file: &'static str,
    },
    /// The root filesystem has no root entry in /etc/shadow for root's password.
    #[error("the root filesystem's /etc/shadow has no line for root, so root's password hash cannot be set; fix the root filesystem")]
    NoRootShadow,
    /// A path's symbolic links loop inside the new root.
    #[error("{path} in the new root is a loop of symbolic links; fix the root filesystem")]
    LinkLoop {
        /// The path, relative to the new root.
        path: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path} in the new root: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be given to its owner.
    #[error("cannot give {path} to uid {uid}, gid {gid}: {source}; /init must run as root")]
    Chown {
        /// The file or directory.
        path: PathBuf,
        /// The owner.
        uid: u32,
        /// The group.
        gid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// The networkd files could not be written.
    #[error(transparent)]
    Network(#[from] Dom0Error),
}

/// The text of `/etc/hosts`: loopback, this host on 127.0.1.1 as Debian does (so its name
/// resolves without the network), then the cluster's hosts with a static address sorted by
/// name. When `domain` is given every name is written fully qualified first, then short.
/// When this host is among `hosts`, its static address takes the place of 127.0.1.1, as
/// Debian's reference asks of a host with a permanent address.
pub fn render_hosts(hostname: &str, domain: Option<&str>, hosts: &[HostsEntry]) -> String {
    let names = |name: &str| match domain {
        Some(domain) => format!("{name}.{domain}\t{name}"),
        None => name.to_string(),
    };
    let is_self = |entry: &&HostsEntry| entry.hostname.eq_ignore_ascii_case(hostname);
    let mut text = String::from("127.0.0.1\tlocalhost\n");
    if !hosts.iter().any(|entry| is_self(&entry)) {
        text += &format!("127.0.1.1\t{}\n", names(hostname));
    }
    text += "\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";
    if hosts.is_empty() {
        return text;
    }
    let mut sorted: Vec<&HostsEntry> = hosts.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |e: &HostsEntry| (e.hostname.to_ascii_lowercase(), e.address);
        key(a).cmp(&key(b))
    });
    text += "\n# The cluster's hosts with a static address (PXEN's configuration).\n";
    for entry in sorted {
        text += &format!("{}\t{}\n", entry.address, names(&entry.hostname));
    }
    text
}

/// The text of an `authorized_keys` file holding `keys`.
pub fn render_authorized_keys(keys: &[String]) -> String {
    let mut text = String::from(HEADER);
    for key in keys {
        text += key.trim();
        text.push('\n');
    }
    text
}

/// The systemd-timesyncd drop-in naming the NTP servers, or `None` when there are none
/// (timesyncd then uses its own defaults).
pub fn render_timesyncd(ntp: &[String]) -> Option<String> {
    (!ntp.is_empty()).then(|| format!("{HEADER}[Time]\nNTP={}\n", ntp.join(" ")))
}

/// `/etc/resolv.conf` for configured DNS servers, or `None` when there are none (the address
/// and DNS servers then come from DHCP). glibc uses the first three `nameserver` lines.
pub fn render_resolv_conf(dns: &[String], search: &[String]) -> Option<String> {
    if dns.is_empty() {
        return None;
    }
    let mut text = String::from(HEADER);
    for server in dns {
        text += &format!("nameserver {server}\n");
    }
    if !search.is_empty() {
        text += &format!("search {}\n", search.join(" "));
    }
    Some(text)
}

/// The root filesystem's account files, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFiles {
    /// `/etc/passwd`.
    pub passwd: String,
    /// `/etc/shadow`.
    pub shadow: String,
    /// `/etc/group`.
    pub group: String,
    /// `/etc/gshadow`, when the root filesystem has one.
    pub gshadow: Option<String>,
}

/// Adds `users` (in name order, whatever order they are given in) and root's password hash to
/// the account files `files`. Returns the new files and the accounts with their ids.
pub fn add_users(
    files: &AccountFiles,
    users: &[UserSpec],
    root_hash: Option<&str>,
) -> Result<(AccountFiles, Vec<Account>), ApplyError> {
    let passwd = parse(&files.passwd, "/etc/passwd", 7, Some(2))?;
    let group = parse(&files.group, "/etc/group", 4, Some(2))?;
    let shadow = parse(&files.shadow, "/etc/shadow", 9, None)?;
    let mut users: Vec<&UserSpec> = users.iter().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for user in &users {
        check_user(user, &passwd, &group)?;
    }
    let mut taken: BTreeSet<u32> = passwd.iter().chain(&group).filter_map(|e| e.id).collect();
    let mut accounts = Vec::new();
    for user in &users {
        let id = (FIRST_ID..=LAST_ID)
            .find(|id| !taken.contains(id))
            .ok_or_else(|| ApplyError::NoFreeId {
                name: user.name.clone(),
            })?;
        taken.insert(id);
        accounts.push(Account {
            name: user.name.clone(),
            id,
        });
    }
    let mut out = AccountFiles {
        passwd: with_final_newline(&files.passwd),
        shadow: set_root_hash(&shadow, root_hash)?,
        group: add_members(&group, &users),
        gshadow: files
            .gshadow
            .as_deref()
            .map(|text| parse(text, "/etc/gshadow", 4, None).map(|g| add_members(&g, &users)))
            .transpose()?,
    };
    for (user, account) in users.iter().zip(&accounts) {
        let (name, id) = (&user.name, account.id);
        let hash = user.password_hash.as_deref().unwrap_or(NO_PASSWORD);
        out.passwd += &format!("{name}:x:{id}:{id}::/home/{name}:{SHELL}\n");
        out.shadow += &format!("{name}:{hash}::0:99999:7:::\n");
        out.group += &format!("{name}:x:{id}:\n");
        if let Some(gshadow) = &mut out.gshadow {
            *gshadow += &format!("{name}:!::\n");
        }
    }
    Ok((out, accounts))
}

/// One line of an account file: its fields, and its numeric id when the file has one.
#[derive(Debug)]
struct Entry {
    fields: Vec<String>,
    id: Option<u32>,
}

impl Entry {
    fn name(&self) -> &str {
        self.fields.first().map_or("", String::as_str)
    }
}

/// Parses the lines of an account file, each of `fields` `:`-separated fields, the field at
/// `id_field` numeric. Empty lines are dropped (the files are written back without them).
fn parse(
    text: &str,
    file: &'static str,
    fields: usize,
    id_field: Option<usize>,
) -> Result<Vec<Entry>, ApplyError> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parts: Vec<String> = line.split(':').map(str::to_string).collect();
        let id = id_field.map(|i| parts.get(i).and_then(|id| id.parse::<u32>().ok()));
        if parts.len() != fields || parts[0].is_empty() || id == Some(None) {
            return Err(ApplyError::MalformedLine {
                file,
                line: index + 1,
                text: line.to_string(),
                fields,
            });
        }
        entries.push(Entry {
            fields: parts,
            id: id.flatten(),
        });
    }
    Ok(entries)
}

fn with_final_newline(text: &str) -> String {
    let mut text = text.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn unparse(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|entry| entry.fields.join(":") + "\n")
        .collect()
}

/// Refuses a user that would take over an existing account or group, or whose values would
/// corrupt the files, and checks that its supplementary groups exist.
fn check_user(user: &UserSpec, passwd: &[Entry], group: &[Entry]) -> Result<(), ApplyError> {
    let unsafe_value = |what, value: &str, file| {
        value
            .contains([':', '\n', '\r'])
            .then(|| ApplyError::UnsafeValue {
                what,
                value: value.to_string(),
                file,
            })
    };
    let checks = [
        unsafe_value("user name", &user.name, "/etc/passwd"),
        user.password_hash
            .as_deref()
            .and_then(|hash| unsafe_value("password hash", hash, "/etc/shadow")),
    ];
    if let Some(error) = checks.into_iter().flatten().next() {
        return Err(error);
    }
    for (entries, file) in [(passwd, "/etc/passwd"), (group, "/etc/group")] {
        if entries.iter().any(|e| e.name() == user.name) {
            return Err(ApplyError::UserExists {
                name: user.name.clone(),
                file,
            });
        }
    }
    match user
        .groups
        .iter()
        .find(|wanted| !group.iter().any(|e| e.name() == wanted.as_str()))
    {
        Some(missing) => Err(ApplyError::UnknownGroup {
            user: user.name.clone(),
            group: missing.clone(),
        }),
        None => Ok(()),
    }
}

/// The group (or gshadow) file with every user added to the member list (the fourth field) of
/// its supplementary groups, after the members already there.
fn add_members(entries: &[Entry], users: &[&UserSpec]) -> String {
    let mut text = String::new();
    for entry in entries {
        let mut fields = entry.fields.clone();
        // `parse` checked that every line has the four fields of /etc/group and /etc/gshadow.
        let mut members: Vec<String> = fields[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        for user in users {
            if user.groups.iter().any(|g| g == entry.name()) && !members.contains(&user.name) {
                members.push(user.name.clone());
            }
        }
        fields[3] = members.join(",");
        text += &(fields.join(":") + "\n");
    }
    text
}

/// The shadow file with root's password hash replaced by `hash`, or as it was for `None`.
fn set_root_hash(shadow: &[Entry], hash: Option<&str>) -> Result<String, ApplyError> {
    let Some(hash) = hash else {
        return Ok(unparse(shadow));
    };
    if hash.contains([':', '\n', '\r']) {
        return Err(ApplyError::UnsafeValue {
            what: "root's password hash",
            value: hash.to_string(),
            file: "/etc/shadow",
        });
    }
    let mut found = false;
    let mut text = String::new();
    for entry in shadow {
        let mut fields = entry.fields.clone();
        if entry.name() == "root" {
            // `parse` checked that every line has the nine fields of /etc/shadow.
            fields[1] = hash.to_string();
            found = true;
        }
        text += &(fields.join(":") + "\n");
    }
    found.then_some(text).ok_or(ApplyError::NoRootShadow)
}

/// Applies `plan` to the root filesystem at `new_root`: the networkd files of the bridge, the
/// NTP drop-in and `/etc/resolv.conf` first (see below), then `/etc/hosts`, the accounts with
/// their homes and SSH keys, root's keys and password. Files already there are replaced; the
/// account files keep their modes and owners.
pub fn apply(new_root: &Path, plan: &Plan) -> Result<Applied, ApplyError> {
    let mut writer = Writer {
        root: new_root,
        files: Vec::new(),
    };
    // The network first: a host that is reachable can be fixed from afar, so an account the
    // root filesystem refuses must not cost it its bridge.
    if let Some(uplink) = &plan.uplink {
        dom0::install_bridge(new_root, uplink.mac, &uplink.name, &plan.network)?;
    }
    if let Some(text) = render_timesyncd(&plan.network.ntp) {
        writer.file(TIMESYNCD_DROP_IN, &text, 0o644, None)?;
    }
    if let Some(text) = render_resolv_conf(&plan.network.dns, &plan.network.search) {
        writer.file("etc/resolv.conf", &text, 0o644, None)?;
    }
    writer.file(
        "etc/hosts",
        render_hosts(&plan.hostname, plan.domain.as_deref(), &plan.hosts),
        0o644,
        None,
    )?;
    let accounts = apply_accounts(&mut writer, plan)?;
    Ok(Applied {
        accounts,
        files: writer.files,
    })
}

/// Adds the accounts, their homes with their keys, and root's keys and password.
fn apply_accounts(writer: &mut Writer, plan: &Plan) -> Result<Vec<Account>, ApplyError> {
    let read = |name: &str| {
        let path = writer.root.join("etc").join(name);
        std::fs::read_to_string(&path).map_err(|source| ApplyError::Read { path, source })
    };
    let files = AccountFiles {
        passwd: read("passwd")?,
        shadow: read("shadow")?,
        group: read("group")?,
        // gshadow is optional: a root filesystem without it has no group passwords to keep.
        gshadow: read("gshadow").ok(),
    };
    let (new, accounts) = add_users(&files, &plan.users, plan.root.password_hash.as_deref())?;
    writer.replace("etc/passwd", &new.passwd)?;
    writer.replace("etc/shadow", &new.shadow)?;
    writer.replace("etc/group", &new.group)?;
    if let Some(gshadow) = &new.gshadow {
        writer.replace("etc/gshadow", gshadow)?;
    }
    let mut users: Vec<&UserSpec> = plan.users.iter().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for (user, account) in users.iter().zip(&accounts) {
        let home = format!("home/{}", user.name);
        let owner = Some((account.id, account.id));
        writer.dir("home", 0o755, None)?;
        writer.dir(&home, 0o700, owner)?;
        writer.skel(&home, owner)?;
        writer.keys(&home, &user.ssh_keys, owner)?;
    }
    if !plan.root.ssh_keys.is_empty() {
        writer.keys("root", &plan.root.ssh_keys, Some((0, 0)))?;
    }
    Ok(accounts)
}

/// Writes files into the new root, remembering which.
struct Writer<'a> {
    root: &'a Path,
    files: Vec<PathBuf>,
}

impl Writer<'_> {
    /// Where `relative` is in the new root: its directory's links resolved inside the root.
    fn place(&self, relative: &str) -> Result<PathBuf, ApplyError> {
        let relative = Path::new(relative);
        let loop_error = || ApplyError::LinkLoop {
            path: relative.to_path_buf(),
        };
        let parent = relative.parent().unwrap_or(Path::new(""));
        let dir = super::resolve_in_root(self.root, parent).map_err(|_| loop_error())?;
        Ok(match relative.file_name() {
            Some(name) => dir.join(name),
            None => dir,
        })
    }

    /// Copies the regular files of `/etc/skel` (`.bashrc`, `.profile`, ...) into `home`, in
    /// name order, with their modes and owned by `owner`; a file the home has already is kept.
    /// A root filesystem without `/etc/skel` gives empty homes.
    fn skel(&mut self, home: &str, owner: Option<(u32, u32)>) -> Result<(), ApplyError> {
        let skel = self.place(SKEL)?;
        let Ok(entries) = std::fs::read_dir(&skel) else {
            return Ok(());
        };
        let read_error = |source| ApplyError::Read {
            path: skel.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(read_error)?;
            let metadata = entry.metadata().map_err(read_error)?;
            if metadata.is_file() {
                files.push((entry.file_name(), metadata.permissions().mode() & 0o7777));
            }
        }
        files.sort();
        for (name, mode) in files {
            let Some(name) = name.to_str() else {
                log::warn!(
                    "skipping {}: its name is not UTF-8",
                    skel.join(&name).display()
                );
                continue;
            };
            let relative = format!("{home}/{name}");
            if self.place(&relative)?.exists() {
                continue;
            }
            let from = skel.join(name);
            let text =
                std::fs::read(&from).map_err(|source| ApplyError::Read { path: from, source })?;
            self.file(&relative, &text, mode, owner)?;
        }
        Ok(())
    }

    /// `<home>/.ssh/authorized_keys` (0600, in a 0700 directory), owned by `owner`.
    fn keys(
        &mut self,
        home: &str,
        keys: &[String],
        owner: Option<(u32, u32)>,
    ) -> Result<(), ApplyError> {
        if let Some(key) = keys.iter().find(|k| k.trim().contains(['\n', '\r'])) {
            return Err(ApplyError::UnsafeValue {
                what: "SSH key",
                value: key.clone(),
                file: "authorized_keys",
            });
        }
        let ssh = format!("{home}/.ssh");
        self.dir(&ssh, 0o700, owner)?;
        self.file(
            &format!("{ssh}/authorized_keys"),
            render_authorized_keys(keys),
            0o600,
            owner,
        )
    }

    /// Creates directory `relative` (and its parents, 0755) with `mode` and `owner`.
    fn dir(
        &mut self,
        relative: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ApplyError> {
        let path = self.place(relative)?;
        let write_error = |source| ApplyError::Write {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
            .map_err(write_error)?;
        chown(&path, owner)
    }

    /// Writes `text` to `relative` with `mode` and `owner`, replacing a link there; the mode
    /// is set before any byte is written, so a private file is never readable by others.
    fn file(
        &mut self,
        relative: &str,
        text: impl AsRef<[u8]>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ApplyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.place(relative)?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)?;
            }
            if path.is_symlink() {
                std::fs::remove_file(&path)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&path)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(text.as_ref())
        };
        write().map_err(|source| ApplyError::Write {
            path: path.clone(),
            source,
        })?;
        chown(&path, owner)?;
        self.files.push(PathBuf::from(relative));
        Ok(())
    }

    /// Rewrites the existing file `relative` in place, keeping its mode and owner (`/etc/shadow`
    /// is 0640 root:shadow in Debian).
    fn replace(&mut self, relative: &str, text: &str) -> Result<(), ApplyError> {
        let path = self.place(relative)?;
        std::fs::write(&path, text).map_err(|source| ApplyError::Write {
            path: path.clone(),
            source,
        })?;
        self.files.push(PathBuf::from(relative));
        Ok(())
    }
}

/// Gives `path` to `owner` (uid, gid), if any.
fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), ApplyError> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| ApplyError::Chown {
        path: path.to_path_buf(),
        uid,
        gid,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Lines of a Debian 12 base system's account files.
    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        bin:x:2:2:bin:/bin:/usr/sbin/nologin\n\
        sys:x:3:3:sys:/dev:/usr/sbin/nologin\n\
        sync:x:4:65534:sync:/bin:/bin/sync\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        _apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n\
        systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n";
    const SHADOW: &str = "root:*:19700:0:99999:7:::\n\
        daemon:*:19700:0:99999:7:::\n\
        bin:*:19700:0:99999:7:::\n\
        sys:*:19700:0:99999:7:::\n\
        sync:*:19700:0:99999:7:::\n\
        nobody:*:19700:0:99999:7:::\n\
        _apt:*:19700:0:99999:7:::\n\
        systemd-network:!*:19700::::::\n";
    /// With one group a custom root filesystem added at gid 1001, which allocation skips.
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        sudo:x:27:\n\
        staff:x:50:\n\
        users:x:100:\n\
        nogroup:x:65534:\n\
        systemd-network:x:998:\n\
        libvirt:x:1001:operator";
    const GSHADOW: &str = "root:*::\n\
        daemon:*::\n\
        sudo:*::\n\
        staff:*::\n\
        users:*::\n\
        nogroup:*::\n\
        systemd-network:!*::\n\
        libvirt:!::operator\n";
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
    const HASH: &str = "$y$j9T$abcdefghijklmnopqrstu.$0123456789abcdefghijklmnopqrstuvwxyzABCDE";

    fn user(name: &str, groups: &[&str], hash: Option<&str>) -> UserSpec {
        UserSpec {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ssh_keys: vec![KEY.to_string()],
            password_hash: hash.map(str::to_string),
        }
    }

    fn debian_files() -> AccountFiles {
        AccountFiles {
            passwd: PASSWD.to_string(),
            shadow: SHADOW.to_string(),
            group: GROUP.to_string(),
            gshadow: Some(GSHADOW.to_string()),
        }
    }

    fn entry(hostname: &str, address: [u8; 4]) -> HostsEntry {
        HostsEntry {
            hostname: hostname.to_string(),
            address: Ipv4Addr::from(address),
        }
    }

    #[test]
    fn hosts_without_a_cluster_name_this_host_on_127_0_1_1() {
        assert_eq!(
            render_hosts("pxen-0123456789", None, &[]),
            "127.0.0.1\tlocalhost\n127.0.1.1\tpxen-0123456789\n\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        );
    }

    #[test]
    fn hosts_list_the_cluster_sorted_with_fully_qualified_names_first() {
        let hosts = [
            entry("rack1-node2", [192, 168, 1, 12]),
            entry("Rack1-node10", [192, 168, 1, 20]),
            entry("backup", [192, 168, 1, 5]),
        ];
        assert_eq!(
            render_hosts("pxen-0123456789", Some("lab.example"), &hosts),
            "127.0.0.1\tlocalhost\n\
             127.0.1.1\tpxen-0123456789.lab.example\tpxen-0123456789\n\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\n\
             # The cluster's hosts with a static address (PXEN's configuration).\n\
             192.168.1.5\tbackup.lab.example\tbackup\n\
             192.168.1.20\tRack1-node10.lab.example\tRack1-node10\n\
             192.168.1.12\track1-node2.lab.example\track1-node2\n"
        );
    }

    #[test]
    fn a_host_with_a_static_address_is_named_on_it_not_on_127_0_1_1() {
        let text = render_hosts("node1", None, &[entry("node1", [10, 0, 0, 1])]);
        assert!(!text.contains("127.0.1.1"), "{text}");
        assert!(text.ends_with("\n10.0.0.1\tnode1\n"), "{text}");
    }

    #[test]
    fn small_files_have_their_exact_text_or_are_not_written() {
        assert_eq!(
            render_authorized_keys(&[format!(" {KEY}\n"), "ssh-rsa AAAAB3Nza".to_string()]),
            format!("{HEADER}{KEY}\nssh-rsa AAAAB3Nza\n")
        );
        let ntp = ["0.pool.ntp.org".to_string(), "192.168.1.1".to_string()];
        assert_eq!(
            render_timesyncd(&ntp).unwrap(),
            format!("{HEADER}[Time]\nNTP=0.pool.ntp.org 192.168.1.1\n")
        );
        assert_eq!(render_timesyncd(&[]), None);
        let dns = ["192.168.1.1".to_string(), "9.9.9.9".to_string()];
        let search = ["lab.example".to_string(), "example".to_string()];
        assert_eq!(
            render_resolv_conf(&dns, &search).unwrap(),
            format!(
                "{HEADER}nameserver 192.168.1.1\nnameserver 9.9.9.9\nsearch lab.example example\n"
            )
        );
        assert_eq!(
            render_resolv_conf(&dns[..1], &[]).unwrap(),
            format!("{HEADER}nameserver 192.168.1.1\n")
        );
        assert_eq!(render_resolv_conf(&[], &search), None);
    }

    #[test]
    fn users_are_appended_in_name_order_skipping_taken_ids() {
        let users = [
            user("carol", &["sudo", "users", "libvirt"], None),
            user("alice", &["sudo"], Some(HASH)),
        ];
        let (files, accounts) = add_users(&debian_files(), &users, None).unwrap();
        assert_eq!(
            accounts,
            [
                Account {
                    name: "alice".to_string(),
                    id: 1000
                },
                Account {
                    name: "carol".to_string(),
                    id: 1002
                },
            ]
        );
        assert_eq!(
            files.passwd,
            format!(
                "{PASSWD}alice:x:1000:1000::/home/alice:/bin/bash\n\
                 carol:x:1002:1002::/home/carol:/bin/bash\n"
            )
        );
        assert_eq!(
            files.shadow,
            format!("{SHADOW}alice:{HASH}::0:99999:7:::\ncarol:*::0:99999:7:::\n")
        );
        assert_eq!(
            files.group,
            "root:x:0:\ndaemon:x:1:\nsudo:x:27:alice,carol\nstaff:x:50:\nusers:x:100:carol\n\
             nogroup:x:65534:\nsystemd-network:x:998:\nlibvirt:x:1001:operator,carol\n\
             alice:x:1000:\ncarol:x:1002:\n"
        );
        assert_eq!(
            files.gshadow.unwrap(),
            "root:*::\ndaemon:*::\nsudo:*::alice,carol\nstaff:*::\nusers:*::carol\n\
             nogroup:*::\nsystemd-network:!*::\nlibvirt:!::operator,carol\n\
             alice:!::\ncarol:!::\n"
        );
    }

    #[test]
    fn the_order_users_are_listed_in_does_not_change_a_byte() {
        let a = user("alice", &["sudo"], Some(HASH));
        let b = user("bob", &["sudo", "users"], None);
        let forward = add_users(&debian_files(), &[a.clone(), b.clone()], None).unwrap();
        let backward = add_users(&debian_files(), &[b, a], None).unwrap();
        assert_eq!(forward, backward);
    }

    #[test]
    fn roots_password_is_set_only_when_configured() {
        let (files, _) = add_users(&debian_files(), &[], Some(HASH)).unwrap();
        assert!(files
            .shadow
            .starts_with(&format!("root:{HASH}:19700:0:99999:7:::\ndaemon:*:")));
        let (files, _) = add_users(&debian_files(), &[], None).unwrap();
        assert_eq!(files.shadow, SHADOW);
        let no_root = AccountFiles {
            shadow: "daemon:*:19700:0:99999:7:::\n".to_string(),
            ..debian_files()
        };
        assert!(matches!(
            add_users(&no_root, &[], Some(HASH)),
            Err(ApplyError::NoRootShadow)
        ));
    }

    #[test]
    fn accounts_that_would_take_over_or_corrupt_are_refused() {
        let files = debian_files();
        let refused = |u: UserSpec| add_users(&files, &[u], None).unwrap_err();
        assert!(matches!(
            refused(user("daemon", &[], None)),
            ApplyError::UserExists { name, file: "/etc/passwd" } if name == "daemon"
        ));
        assert!(matches!(
            refused(user("staff", &[], None)),
            ApplyError::UserExists { name, file: "/etc/group" } if name == "staff"
        ));
        assert!(matches!(
            refused(user("alice", &["sudo", "wheel"], None)),
            ApplyError::UnknownGroup { user, group } if user == "alice" && group == "wheel"
        ));
        assert!(matches!(
            refused(user("alice", &[], Some("$6$x:0:0"))),
            ApplyError::UnsafeValue {
                what: "password hash",
                ..
            }
        ));
        assert!(matches!(
            refused(user("al:ice", &[], None)),
            ApplyError::UnsafeValue {
                what: "user name",
                ..
            }
        ));
        let message = refused(user("daemon", &[], None)).to_string();
        assert!(
            message.contains("`daemon`") && message.contains("/etc/passwd"),
            "{message}"
        );
    }

    #[test]
    fn malformed_account_lines_are_named() {
        let broken = AccountFiles {
            passwd: format!("{PASSWD}\nbroken:x:notanumber:0::/:/bin/sh\n"),
            ..debian_files()
        };
        let error = add_users(&broken, &[], None).unwrap_err();
        assert!(
            matches!(
                &error,
                ApplyError::MalformedLine {
                    file: "/etc/passwd",
                    line: 10,
                    fields: 7,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn ids_run_out_with_a_clear_error() {
        let group: String = (FIRST_ID..=LAST_ID)
            .map(|id| format!("g{id}:x:{id}:\n"))
            .collect();
        let full = AccountFiles {
            group,
            gshadow: None,
            ..debian_files()
        };
        assert!(matches!(
            add_users(&full, &[user("alice", &[], None)], None),
            Err(ApplyError::NoFreeId { name }) if name == "alice"
        ));
    }

    /// A fake Debian root filesystem: account files with Debian's modes, and resolv.conf as
    /// the absolute link systemd-resolved makes (which must not be followed out of the root).
    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        for (name, text, mode) in [
            ("passwd", PASSWD, 0o644),
            ("shadow", SHADOW, 0o640),
            ("group", GROUP, 0o644),
            ("gshadow", GSHADOW, 0o640),
        ] {
            std::fs::write(etc.join(name), text).unwrap();
            std::fs::set_permissions(etc.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        std::fs::create_dir_all(etc.join("skel")).unwrap();
        std::fs::write(etc.join("skel/.profile"), "# ~/.profile\n").unwrap();
        std::fs::write(etc.join("skel/.bashrc"), "# ~/.bashrc\n").unwrap();
        std::fs::set_permissions(
            etc.join("skel/.bashrc"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/run/pxen-test-outside-the-root/stub-resolv.conf",
            etc.join("resolv.conf"),
        )
        .unwrap();
        root
    }

    fn plan() -> Plan {
        Plan {
            hostname: "rack1-node1".to_string(),
            domain: Some("lab.example".to_string()),
            hosts: vec![entry("rack1-node1", [192, 168, 1, 11])],
            users: vec![
                user("carol", &["users"], None),
                user("alice", &["sudo"], Some(HASH)),
            ],
            root: RootSpec {
                ssh_keys: vec![KEY.to_string()],
                password_hash: None,
            },
            network: NetworkSpec {
                addressing: AddressingSpec::Static {
                    address: Ipv4Addr::new(192, 168, 1, 11),
                    prefix: 24,
                    gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
                },
                dns: vec!["192.168.1.1".to_string()],
                search: vec!["lab.example".to_string()],
                ntp: vec!["pool.ntp.org".to_string()],
                ..NetworkSpec::default()
            },
            uplink: Some(Uplink {
                mac: MacAddr::new([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                name: "eth0".to_string(),
            }),
        }
    }

    fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
        let metadata = std::fs::symlink_metadata(path).unwrap();
        (metadata.mode() & 0o7777, metadata.uid(), metadata.gid())
    }

    #[test]
    fn applying_writes_every_file_with_its_mode_and_owner() {
        let root = fake_root();
        let r = root.path();
        if !nix::unistd::geteuid().is_root() {
            // Giving homes to their users needs root: say so, with the path.
            let error = apply(r, &plan()).unwrap_err();
            assert!(
                matches!(error, ApplyError::Chown { uid: 1000, .. }),
                "{error}"
            );
            return;
        }
        let applied = apply(r, &plan()).unwrap();
        assert_eq!(
            applied.accounts,
            [
                Account {
                    name: "alice".to_string(),
                    id: 1000
                },
                Account {
                    name: "carol".to_string(),
                    id: 1002
                },
            ]
        );
        let read = |path: &str| std::fs::read_to_string(r.join(path)).unwrap();
        assert_eq!(
            read("etc/hosts"),
            render_hosts("rack1-node1", Some("lab.example"), &plan().hosts)
        );
        assert!(read("etc/passwd").ends_with("carol:x:1002:1002::/home/carol:/bin/bash\n"));
        assert_eq!(mode_and_owner(&r.join("etc/shadow")).0, 0o640);
        assert_eq!(mode_and_owner(&r.join("home/alice")), (0o700, 1000, 1000));
        assert_eq!(
            mode_and_owner(&r.join("home/alice/.ssh")),
            (0o700, 1000, 1000)
        );
        assert_eq!(
            mode_and_owner(&r.join("home/alice/.ssh/authorized_keys")),
            (0o600, 1000, 1000)
        );
        assert_eq!(
            mode_and_owner(&r.join("home/carol/.ssh/authorized_keys")),
            (0o600, 1002, 1002)
        );
        assert_eq!(read("home/carol/.bashrc"), "# ~/.bashrc\n");
        assert_eq!(
            mode_and_owner(&r.join("home/carol/.bashrc")),
            (0o640, 1002, 1002)
        );
        assert_eq!(
            mode_and_owner(&r.join("home/carol/.profile")),
            (0o644, 1002, 1002)
        );
        assert_eq!(
            read("home/alice/.ssh/authorized_keys"),
            format!("{HEADER}{KEY}\n")
        );
        assert_eq!(
            mode_and_owner(&r.join("root/.ssh/authorized_keys")),
            (0o600, 0, 0)
        );
        assert_eq!(mode_and_owner(&r.join("root/.ssh")), (0o700, 0, 0));
        assert_eq!(
            read(TIMESYNCD_DROP_IN),
            format!("{HEADER}[Time]\nNTP=pool.ntp.org\n")
        );
        // The link was replaced by a file; nothing was written where it pointed.
        assert!(!r.join("etc/resolv.conf").is_symlink());
        assert!(!Path::new("/run/pxen-test-outside-the-root").exists());
        assert_eq!(
            read("etc/resolv.conf"),
            format!("{HEADER}nameserver 192.168.1.1\nsearch lab.example\n")
        );
        assert!(read("etc/systemd/network/20-pxen-xenbr0.network")
            .contains("Address=192.168.1.11/24\nGateway=192.168.1.1\n"));
        assert!(applied.files.contains(&PathBuf::from("etc/resolv.conf")));
    }

    /// A file of a tree: its path, its bytes (a link's target), its mode and owner.
    type FileState = (PathBuf, Vec<u8>, (u32, u32, u32));

    /// Every file under `dir`, in path order.
    fn snapshot(dir: &Path) -> Vec<FileState> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next).unwrap() {
                let path = entry.unwrap().path();
                let bytes = if path.is_symlink() {
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes()
                } else if path.is_dir() {
                    pending.push(path.clone());
                    Vec::new()
                } else {
                    std::fs::read(&path).unwrap()
                };
                let meta = mode_and_owner(&path);
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes, meta));
            }
        }
        files.sort();
        files
    }

    #[test]
    fn the_same_plan_and_machine_give_byte_identical_roots() {
        if !nix::unistd::geteuid().is_root() {
            // Without root the homes cannot be given away (see the test above).
            assert!(apply(fake_root().path(), &plan()).is_err());
            return;
        }
        let (first, second) = (fake_root(), fake_root());
        apply(first.path(), &plan()).unwrap();
        let mut reordered = plan();
        reordered.users.reverse();
        apply(second.path(), &reordered).unwrap();
        let (a, b) = (snapshot(first.path()), snapshot(second.path()));
        assert!(a.len() > 20, "{a:?}");
        assert_eq!(a, b);
    }
}
