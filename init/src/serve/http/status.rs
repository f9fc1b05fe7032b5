//! The cluster's status board: the hosts host0 has seen and how far each has booted, shown by
//! the HTTP server at `/` (HTML) and `/status.json`.
//!
//! The other parts of the boot service update it through a shared [`StatusBoard`]: the
//! configuration lists the expected hosts, Wake-on-LAN marks them waking, proxyDHCP sees
//! their PXE firmware (and the address the LAN's DHCP server gives them), TFTP and HTTP count
//! the files they fetch, and their reports mark them online. The pages render a snapshot.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Host;
use crate::net::mac::MacAddr;

/// How far a host has come.
#[derive(Debug, Clone, PartialEq)]
pub enum HostState {
    /// Listed in the configuration, not heard of yet (and not being woken: no MAC listed).
    Expected,
    /// Wake-on-LAN packets are being sent; nothing heard from it yet.
    Waking,
    /// Its PXE firmware asked for a boot program; it is fetching its boot files.
    Booting {
        /// How many files it has fetched so far.
        files_fetched: u32,
    },
    /// It reported its dom0 up.
    Online,
}

impl HostState {
    fn label(&self) -> String {
        match self {
            HostState::Expected => "expected (not seen yet)".to_string(),
            HostState::Waking => "waking".to_string(),
            HostState::Booting { files_fetched } => {
                format!("booting ({files_fetched} files fetched)")
            }
            HostState::Online => "online".to_string(),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            HostState::Expected => "expected",
            HostState::Waking => "waking",
            HostState::Booting { .. } => "booting",
            HostState::Online => "online",
        }
    }
}

/// One host on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct HostStatus {
    /// Its hostname, once known (from the configuration or its report).
    pub hostname: Option<String>,
    /// Its DMI serial, once known.
    pub serial: Option<String>,
    /// Its network cards' MACs, `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
    /// Its IPv4 address, once seen (in its DHCP request or its report).
    pub address: Option<Ipv4Addr>,
    /// Whether the configuration lists it; a host that is not listed is booted all the same
    /// and shown as new.
    pub in_config: bool,
    /// How far it has come.
    pub state: HostState,
    /// When host0 first heard of it.
    pub first_seen: SystemTime,
    /// When host0 last heard from it.
    pub last_seen: SystemTime,
    /// Its boot phases and when each was reached, in seconds since its power-on.
    pub boot_timeline: Vec<(String, f64)>,
}

impl HostStatus {
    /// A host just seen, known by one MAC, not (yet) matched to the configuration.
    pub fn seen_now(mac: &str, state: HostState) -> HostStatus {
        let now = SystemTime::now();
        HostStatus {
            hostname: None,
            serial: None,
            macs: vec![mac.to_ascii_lowercase()],
            address: None,
            in_config: false,
            state,
            first_seen: now,
            last_seen: now,
            boot_timeline: Vec::new(),
        }
    }

    /// The state as the status page shows it, new hosts marked.
    fn state_label(&self) -> String {
        if self.in_config {
            self.state.label()
        } else {
            format!("{} (new: not in the configuration)", self.state.label())
        }
    }

    fn has_mac(&self, mac: &str) -> bool {
        self.macs.iter().any(|m| m.eq_ignore_ascii_case(mac))
    }
}

/// What a host says about itself when its dom0 is up (see [`StatusBoard::host_online`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineHost {
    /// Its hostname.
    pub hostname: String,
    /// Its DMI serial, if it has a usable one.
    pub serial: Option<String>,
    /// Its network cards' MACs.
    pub macs: Vec<String>,
    /// The address it reported from.
    pub address: Option<Ipv4Addr>,
    /// Its boot phases, in seconds since its power-on.
    pub boot_timeline: Vec<(String, f64)>,
}

/// The shared board: clone it freely; every clone shows the same hosts.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<Board>>,
}

#[derive(Debug, Default)]
struct Board {
    cluster: String,
    /// host0's notice that it does not run the current configuration (see
    /// [`StatusBoard::set_notice`]); empty when it does.
    notice: Vec<String>,
    hosts: Vec<HostStatus>,
}

impl StatusBoard {
    /// An empty board for the cluster of this name.
    pub fn new(cluster: &str) -> StatusBoard {
        StatusBoard {
            inner: Arc::new(RwLock::new(Board {
                cluster: cluster.to_string(),
                notice: Vec::new(),
                hosts: Vec::new(),
            })),
        }
    }

    /// Shows `lines` above the hosts, in large red letters on the page: host0 does not run
    /// the current configuration (a headline, then what is wrong; see
    /// `config::Chosen::notice`).
    pub fn set_notice(&self, lines: Vec<String>) {
        self.write().notice = lines;
    }

    // A panic in another thread while it held the lock must not take the status page down
    // with it: the board holds plain data, always consistent between two statements.
    fn read(&self) -> RwLockReadGuard<'_, Board> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Board> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Updates the host with this MAC (case-insensitive), adding it with `state` first if it
    /// is not on the board; `last_seen` is set to now.
    pub fn update_by_mac(&self, mac: &str, state: HostState, update: impl FnOnce(&mut HostStatus)) {
        let mut board = self.write();
        let index = match board.hosts.iter().position(|h| h.has_mac(mac)) {
            Some(index) => index,
            None => {
                board.hosts.push(HostStatus::seen_now(mac, state));
                board.hosts.len() - 1
            }
        };
        let host = &mut board.hosts[index];
        host.last_seen = SystemTime::now();
        update(host);
    }

    /// Puts the hosts the configuration lists on the board, as expected.
    pub fn expect_hosts(&self, hosts: &[Host]) {
        let now = SystemTime::now();
        let mut board = self.write();
        for host in hosts {
            board.hosts.push(HostStatus {
                hostname: Some(host.hostname.clone()),
                serial: Some(host.serial.clone()),
                macs: host.macs.iter().map(MacAddr::to_string).collect(),
                address: None,
                in_config: true,
                state: HostState::Expected,
                first_seen: now,
                last_seen: now,
                boot_timeline: Vec::new(),
            });
        }
    }

    /// Host0 started waking the host with this MAC.
    pub fn waking(&self, mac: &str) {
        self.update_by_mac(mac, HostState::Waking, |host| {
            if host.state == HostState::Expected {
                host.state = HostState::Waking;
            }
        });
    }

    /// A PXE client asked for its boot program, from `address` if it has one yet. A host
    /// that was online is booting again.
    pub fn pxe_request(&self, mac: &str, address: Option<Ipv4Addr>) {
        let booting = HostState::Booting { files_fetched: 0 };
        self.update_by_mac(mac, booting.clone(), |host| {
            if !matches!(host.state, HostState::Booting { .. }) {
                host.state = booting;
                host.boot_timeline.clear();
            }
            if address.is_some() {
                host.address = address;
            }
        });
    }

    /// The client at `address` fetched a whole boot file. Returns whether that address
    /// belongs to a host on the board (an administrator's browser does not).
    pub fn file_fetched(&self, address: IpAddr) -> bool {
        let IpAddr::V4(address) = address else {
            return false;
        };
        let mut board = self.write();
        let Some(host) = board.hosts.iter_mut().find(|h| h.address == Some(address)) else {
            return false;
        };
        host.last_seen = SystemTime::now();
        match &mut host.state {
            HostState::Booting { files_fetched } => *files_fetched += 1,
            // A file fetched without a PXE request seen (proxyDHCP restarted meanwhile).
            HostState::Expected | HostState::Waking => {
                host.state = HostState::Booting { files_fetched: 1 }
            }
            HostState::Online => {}
        }
        true
    }

    /// A host reported its dom0 up. It is found by any of its MACs, else by its serial;
    /// a host on the board under another entry (e.g. a second NIC seen by proxyDHCP) is
    /// merged into one.
    pub fn host_online(&self, report: OnlineHost) {
        let now = SystemTime::now();
        let mut board = self.write();
        let matches = |h: &HostStatus| {
            report.macs.iter().any(|m| h.has_mac(m))
                || (report.serial.is_some() && h.serial == report.serial)
        };
        // The merged entry takes the place of the first one found.
        let place = board.hosts.iter().position(matches);
        let mut found: Vec<HostStatus> = Vec::new();
        board.hosts.retain(|h| {
            let keep = !matches(h);
            if !keep {
                found.push(h.clone());
            }
            keep
        });
        let first_seen = found.iter().map(|h| h.first_seen).min().unwrap_or(now);
        let in_config = found.iter().any(|h| h.in_config);
        let mut macs: Vec<String> = found.iter().flat_map(|h| h.macs.clone()).collect();
        macs.extend(report.macs.iter().map(|m| m.to_ascii_lowercase()));
        macs.sort();
        macs.dedup();
        let host = HostStatus {
            hostname: Some(report.hostname),
            serial: report.serial,
            macs,
            address: report
                .address
                .or_else(|| found.iter().find_map(|h| h.address)),
            in_config,
            state: HostState::Online,
            first_seen,
            last_seen: now,
            boot_timeline: report.boot_timeline,
        };
        let place = place.unwrap_or(board.hosts.len());
        board.hosts.insert(place, host);
    }

    /// A copy of the hosts, in the order they were first seen.
    pub fn snapshot(&self) -> Vec<HostStatus> {
        self.read().hosts.clone()
    }

    /// The status page.
    pub fn render_html(&self, now: SystemTime) -> String {
        let board = self.read();
        let cluster = escape_html(&board.cluster);
        let mut page = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
             <title>PXEN {cluster}</title></head>\n<body><h1>PXEN cluster {cluster}</h1>\n\
             {}<p>{} host(s), {} online, at {}</p>\n<table border=\"1\" cellpadding=\"4\">\n\
             <tr><th>hostname</th><th>serial</th><th>MACs</th><th>address</th><th>state</th><th>first seen</th>\
             <th>last seen</th><th>boot timeline (s since power-on)</th></tr>\n",
            notice_html(&board.notice),
            board.hosts.len(),
            board.hosts.iter().filter(|h| h.state == HostState::Online).count(),
            utc(now),
        );
        for host in &board.hosts {
            let timeline: Vec<String> = host
                .boot_timeline
                .iter()
                .map(|(phase, seconds)| format!("{} {seconds:.1}", escape_html(phase)))
                .collect();
            // Writing into a String cannot fail.
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(host.hostname.as_deref().unwrap_or("?")),
                escape_html(host.serial.as_deref().unwrap_or("?")),
                escape_html(&host.macs.join(" ")),
                host.address.map_or("?".to_string(), |a| a.to_string()),
                escape_html(&host.state_label()),
                utc(host.first_seen),
                utc(host.last_seen),
                timeline.join(", "),
            );
        }
        page.push_str("</table>\n</body></html>\n");
        page
    }

    /// The board as a plain text table, for `pxen status` on a console.
    pub fn render_text(&self, now: SystemTime) -> String {
        let board = self.read();
        let rows: Vec<[String; 5]> = board
            .hosts
            .iter()
            .map(|host| {
                [
                    host.hostname.clone().unwrap_or_else(|| "?".into()),
                    host.address.map_or("?".into(), |a| a.to_string()),
                    host.macs.join(" "),
                    host.state_label(),
                    host.boot_timeline
                        .last()
                        .map_or(String::new(), |(phase, s)| format!("{phase} at {s:.1} s")),
                ]
            })
            .collect();
        let header = ["HOSTNAME", "ADDRESS", "MACS", "STATE", "LAST PHASE"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = notice_text(&board.notice);
        text += &format!(
            "PXEN cluster {}: {} host(s), {} online, at {}\n",
            board.cluster,
            board.hosts.len(),
            board
                .hosts
                .iter()
                .filter(|h| h.state == HostState::Online)
                .count(),
            utc(now)
        );
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            text.push_str(cells.join("  ").trim_end());
            text.push('\n');
        }
        text
    }

    /// The board as JSON, for scripts and tests: `{"cluster":..,"hosts":[{..}]}`, times in
    /// seconds since the Unix epoch.
    pub fn render_json(&self) -> String {
        let board = self.read();
        let hosts: Vec<String> = board.hosts.iter().map(host_json).collect();
        let notice: Vec<String> = board.notice.iter().map(|l| json_string(l)).collect();
        format!(
            "{{\"cluster\":{},\"notice\":[{}],\"hosts\":[{}]}}\n",
            json_string(&board.cluster),
            notice.join(","),
            hosts.join(",")
        )
    }
}

/// The notice as a red box atop the page: the headline large, the details as they are.
fn notice_html(notice: &[String]) -> String {
    let Some((headline, details)) = notice.split_first() else {
        return String::new();
    };
    let details: Vec<String> = details.iter().map(|l| escape_html(l)).collect();
    format!(
        "<div style=\"border:4px solid red;color:red;padding:8px\"><h1>{}</h1><pre>{}</pre></div>\n",
        escape_html(headline),
        details.join("\n")
    )
}

/// The notice framed by `!` lines above the table.
fn notice_text(notice: &[String]) -> String {
    if notice.is_empty() {
        return String::new();
    }
    let bar = "!".repeat(notice[0].chars().count());
    format!("{bar}\n{}\n{bar}\n\n", notice.join("\n"))
}

fn host_json(host: &HostStatus) -> String {
    let optional =
        |value: &Option<String>| value.as_deref().map_or("null".to_string(), json_string);
    let macs: Vec<String> = host.macs.iter().map(|m| json_string(m)).collect();
    let timeline: Vec<String> = host
        .boot_timeline
        .iter()
        .map(|(phase, s)| format!("[{},{}]", json_string(phase), json_number(*s)))
        .collect();
    let files = match host.state {
        HostState::Booting { files_fetched } => format!(",\"files_fetched\":{files_fetched}"),
        _ => String::new(),
    };
    format!(
        "{{\"hostname\":{},\"serial\":{},\"macs\":[{}],\"address\":{},\"in_config\":{},\"state\":\"{}\"{files},\"first_seen\":{},\"last_seen\":{},\"boot_timeline\":[{}]}}",
        optional(&host.hostname),
        optional(&host.serial),
        macs.join(","),
        optional(&host.address.map(|a| a.to_string())),
        host.in_config,
        host.state.key(),
        epoch_seconds(host.first_seen),
        epoch_seconds(host.last_seen),
        timeline.join(","),
    )
}

/// Text made safe inside HTML elements and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // `<` too, so the JSON can never close a <script> if someone embeds it.
            c if (c as u32) < 0x20 || c == '<' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON has no NaN or infinity.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "null".to_string()
    }
}

fn epoch_seconds(time: SystemTime) -> u64 {
    // A time before 1970 (a machine whose clock was never set) shows as 0.
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(time: SystemTime) -> String {
    let seconds = epoch_seconds(time);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's algorithm,
/// for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14 22:13:20 UTC"
        );
    }

    #[test]
    fn hosts_are_found_by_mac_and_everything_is_escaped() {
        let board = StatusBoard::new("lab<1>");
        board.update_by_mac("AA:BB:CC:00:00:01", HostState::Waking, |_| {});
        board.update_by_mac("aa:bb:cc:00:00:01", HostState::Waking, |host| {
            host.state = HostState::Booting { files_fetched: 2 };
            host.hostname = Some("<script>alert(1)</script>".into());
            host.boot_timeline.push(("xen & \"dom0\"".into(), 12.25));
        });
        board.update_by_mac("aa:bb:cc:00:00:02", HostState::Waking, |host| {
            host.serial = Some("S\"2\n".into())
        });
        let hosts = board.snapshot();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].state, HostState::Booting { files_fetched: 2 });

        let html = board.render_html(UNIX_EPOCH);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("xen &amp; &quot;dom0&quot; 12.2"));
        assert!(html.contains("PXEN cluster lab&lt;1&gt;"));
        assert!(html.contains("booting (2 files fetched)"));

        let json = board.render_json();
        assert!(
            json.starts_with(
                "{\"cluster\":\"lab\\u003c1>\",\"notice\":[],\"hosts\":[{\"hostname\":\"\\u003cscript>"
            ),
            "{json}"
        );
        assert!(json.contains("\"state\":\"booting\",\"files_fetched\":2"));
        assert!(json.contains("[\"xen & \\\"dom0\\\"\",12.25]"));
        assert!(json.contains("\"serial\":\"S\\\"2\\n\""));
    }

    #[test]
    fn the_configuration_notice_heads_every_rendering() {
        let board = StatusBoard::new("lab");
        assert!(!board
            .render_html(UNIX_EPOCH)
            .contains("border:4px solid red"));
        assert!(board
            .render_text(UNIX_EPOCH)
            .starts_with("PXEN cluster lab"));
        board.set_notice(vec![
            "THE CONFIGURATION IS BROKEN".into(),
            "cluster.ron:3:9: <bad>".into(),
        ]);
        let html = board.render_html(UNIX_EPOCH);
        assert!(
            html.contains(
                "<h1>THE CONFIGURATION IS BROKEN</h1><pre>cluster.ron:3:9: &lt;bad&gt;</pre>"
            ),
            "{html}"
        );
        let text = board.render_text(UNIX_EPOCH);
        assert!(
            text.starts_with(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!\nTHE CONFIGURATION IS BROKEN\ncluster.ron:3:9: <bad>\n"
            ),
            "{text}"
        );
        assert!(board.render_json().contains(
            "\"notice\":[\"THE CONFIGURATION IS BROKEN\",\"cluster.ron:3:9: \\u003cbad>\"]"
        ));
    }

    fn configured(serial: &str, hostname: &str, mac: &str) -> Host {
        Host {
            serial: serial.into(),
            hostname: hostname.into(),
            macs: vec![mac.parse().unwrap()],
            pool: None,
            network: None,
        }
    }

    fn online(hostname: &str, serial: &str, macs: &[&str]) -> OnlineHost {
        OnlineHost {
            hostname: hostname.into(),
            serial: Some(serial.into()),
            macs: macs.iter().map(|m| m.to_string()).collect(),
            address: Some(Ipv4Addr::new(10, 0, 0, 9)),
            boot_timeline: vec![("dom0-up".into(), 99.5)],
        }
    }

    #[test]
    fn a_configured_host_goes_from_expected_to_online() {
        let board = StatusBoard::new("lab");
        board.expect_hosts(&[configured("S1", "node1", "52:54:00:00:00:01")]);
        let state = || board.snapshot()[0].state.clone();
        assert_eq!(state(), HostState::Expected);
        board.waking("52:54:00:00:00:01");
        assert_eq!(state(), HostState::Waking);

        let address = Ipv4Addr::new(10, 0, 0, 9);
        board.pxe_request("52:54:00:00:00:01", Some(address));
        assert!(board.file_fetched(IpAddr::V4(address)));
        assert!(board.file_fetched(IpAddr::V4(address)));
        assert!(
            !board.file_fetched(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8))),
            "a stranger's browser"
        );
        board.pxe_request("52:54:00:00:00:01", Some(address));
        assert_eq!(
            state(),
            HostState::Booting { files_fetched: 2 },
            "DHCP again mid-boot keeps the count"
        );

        board.host_online(online("node1", "S1", &["52:54:00:00:00:01"]));
        let hosts = board.snapshot();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].state, HostState::Online);
        assert!(hosts[0].in_config);
        assert_eq!(hosts[0].boot_timeline, [("dom0-up".to_string(), 99.5)]);
        let json = board.render_json();
        assert!(
            json.contains("\"address\":\"10.0.0.9\",\"in_config\":true,\"state\":\"online\""),
            "{json}"
        );

        board.waking("52:54:00:00:00:01");
        assert_eq!(state(), HostState::Online, "waking never demotes a host");
        board.pxe_request("52:54:00:00:00:01", None);
        assert_eq!(
            state(),
            HostState::Booting { files_fetched: 0 },
            "an online host that PXE-boots is rebooting"
        );
        assert!(board.snapshot()[0].boot_timeline.is_empty());
    }

    #[test]
    fn a_report_merges_entries_and_unknown_hosts_are_new() {
        let board = StatusBoard::new("lab");
        board.expect_hosts(&[configured("S1", "node1", "52:54:00:00:00:01")]);
        // Its second NIC PXE-booted; then it reports both MACs.
        board.pxe_request("52:54:00:00:00:aa", None);
        board.pxe_request("52:54:00:00:00:bb", None);
        board.host_online(online(
            "node1",
            "S1",
            &["52:54:00:00:00:01", "52:54:00:00:00:AA"],
        ));
        let hosts = board.snapshot();
        assert_eq!(hosts.len(), 2, "{hosts:#?}");
        assert_eq!(hosts[0].macs, ["52:54:00:00:00:01", "52:54:00:00:00:aa"]);
        assert!(hosts[0].in_config);
        assert!(!hosts[1].in_config);

        board.host_online(online("stray", "S9", &["52:54:00:00:00:cc"]));
        let text = board.render_text(UNIX_EPOCH);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "PXEN cluster lab: 3 host(s), 2 online, at 1970-01-01 00:00:00 UTC",
                "HOSTNAME  ADDRESS   MACS                                 STATE                                                      LAST PHASE",
                "node1     10.0.0.9  52:54:00:00:00:01 52:54:00:00:00:aa  online                                                     dom0-up at 99.5 s",
                "?         ?         52:54:00:00:00:bb                    booting (0 files fetched) (new: not in the configuration)",
                "stray     10.0.0.9  52:54:00:00:00:cc                    online (new: not in the configuration)                     dom0-up at 99.5 s",
            ]
        );
        let html = board.render_html(UNIX_EPOCH);
        assert!(
            html.contains("online (new: not in the configuration)"),
            "{html}"
        );
        assert!(html.contains("3 host(s), 2 online"), "{html}");
    }

    #[test]
    fn non_finite_numbers_are_null_in_json() {
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_number(1.5), "1.5");
    }
}
