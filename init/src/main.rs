//! `/init` when the kernel starts it as PID 1; the `pxen` administration command otherwise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use pxen::handoff::dom0;
use pxen::report::{client, local};
use pxen::serve::announce::watch::WatchConfig;
use pxen::serve::announce::{find, ANNOUNCE_PORT, DEFAULT_SETTLE};
use pxen::serve::service::{self, ServiceConfig};
use pxen::state::{self, archive, sync, upload};
use pxen::{boot, cmdline, config, identity, logger};

const USAGE: &str = "\
usage: pxen COMMAND

As PID 1 (the initramfs' /init) this binary boots the host; see the README.

commands:
  config check DIR     check a configuration directory; print every problem with file:line:col
  config default DIR   write the annotated default configuration, with a fresh cluster secret,
                       into DIR (never overwrites)
  config secret        print a fresh random cluster secret
  serve --root DIR --listen IP [--config DIR] [--http-port N] [--tftp-port N]
        [--dhcp-port N --pxe-port N | --no-proxydhcp] [--interface IF]
        [--announce-port N] [--settle SECONDS]
                       run the boot service (proxyDHCP, TFTP, HTTP) for the boot files in DIR
                       (a PXEN drive's files), announcing IP; the configuration appended to
                       the served initramfs is DIR/config unless --config names another;
                       ports default to 80, 69, 67 and 4011. It first listens for other PXEN
                       boot servers on UDP --announce-port (7911) for --settle seconds (6),
                       serves only if none has precedence, and exits when it stands down
  hostname [--sys DIR] [--config DIR]
                       print the hostname PXEN gives this machine, and why
  report [--server URL] [--config DIR] [--deadline SECONDS]
                       tell host0 this host is up (run by pxen-report.service in dom0): sends
                       the hostname, serial, MACs, boot ID and boot timeline, signed with the
                       cluster secret, to pxen.server= of the kernel command line (host0
                       itself when booted from the drive); retries until accepted, or until
                       the deadline
  state save [--root DIR] [--server URL] [--config DIR] [--name NAME] [--base FILE]
             [--deadline SECONDS]
                       save this host's state (SSH host keys, machine ID, toolstack state;
                       run by pxen-state.service in dom0) to host0 when it changed since the
                       last acknowledged save (the hash in --base, /run/pxen/state-base);
                       NAME defaults to this machine's (from its serial); retries until host0
                       answers; host0 keeps its saved state and answers 409 when this host
                       booted without it
  state sync           host0 only: write the states the boot service stored in RAM to the
                       drive (run by pxen-state-sync.path and .timer); without the drive,
                       say so and succeed
  status [--server URL] [--json]
                       print host0's status page (pxen.server= of the kernel command line,
                       else this host's own): every host, its state, address, boot timeline
  version              print the version
";

fn main() -> ExitCode {
    if std::process::id() == 1 {
        boot::run_pid1();
    }
    logger::init_command(log::LevelFilter::Info);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&words) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pxen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(words: &[&str]) -> Result<(), String> {
    match words {
        ["config", "check", dir] => config_check(Path::new(dir)),
        ["config", "default", dir] => config_default(Path::new(dir)),
        ["config", "secret"] => {
            println!("{}", config::generate_secret());
            Ok(())
        }
        ["hostname", rest @ ..] => hostname(rest),
        ["serve", rest @ ..] => serve(rest),
        ["report", rest @ ..] => report(rest),
        ["status", rest @ ..] => status(rest),
        ["state", "save", rest @ ..] => state_save(rest),
        ["state", "sync"] => state_sync(),
        ["version"] | ["--version"] => {
            println!("pxen {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        ["help"] | ["--help"] | ["-h"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command `{}`\n{USAGE}", words.join(" "))),
    }
}

fn config_check(dir: &Path) -> Result<(), String> {
    let cluster = config::load_dir(dir).map_err(|e| e.to_string())?;
    println!(
        "{}: valid (cluster {:?}, {} named host(s))",
        dir.display(),
        cluster.name,
        cluster.hosts.len()
    );
    Ok(())
}

fn config_default(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in config::default_files(&config::generate_secret()) {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|e| {
                format!(
                    "cannot write {}: {e} (an existing file is never overwritten)",
                    path.display()
                )
            })?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Splits `--flag value` pairs and lone `--switch`es into a map; `switches` lists the flags
/// that take no value.
fn options<'a>(words: &[&'a str], switches: &[&str]) -> Result<HashMap<&'a str, &'a str>, String> {
    let mut map = HashMap::new();
    let mut rest = words;
    while let [flag, tail @ ..] = rest {
        if !flag.starts_with("--") {
            return Err(format!("unexpected `{flag}`\n{USAGE}"));
        }
        if switches.contains(flag) {
            map.insert(*flag, "");
            rest = tail;
            continue;
        }
        let [value, tail @ ..] = tail else {
            return Err(format!("`{flag}` needs a value\n{USAGE}"));
        };
        map.insert(*flag, *value);
        rest = tail;
    }
    Ok(map)
}

fn port(options: &HashMap<&str, &str>, flag: &str, default: u16) -> Result<u16, String> {
    options.get(flag).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("{flag} takes a port number, not `{v}`"))
    })
}

fn serve(words: &[&str]) -> Result<(), String> {
    const KNOWN: &[&str] = &[
        "--root",
        "--listen",
        "--config",
        "--http-port",
        "--tftp-port",
        "--dhcp-port",
        "--pxe-port",
        "--no-proxydhcp",
        "--interface",
        "--announce-port",
        "--settle",
    ];
    let options = options(words, &["--no-proxydhcp"])?;
    if let Some(unknown) = options.keys().find(|k| !KNOWN.contains(k)) {
        return Err(format!("unknown option `{unknown}`\n{USAGE}"));
    }
    let root = PathBuf::from(options.get("--root").ok_or("serve needs --root DIR")?);
    let listen = options
        .get("--listen")
        .ok_or("serve needs --listen IP (the address clients reach this server at)")?;
    let address = listen
        .parse()
        .map_err(|_| format!("--listen takes an IPv4 address, not `{listen}`"))?;
    let config_dir = options
        .get("--config")
        .map_or_else(|| root.join("config"), PathBuf::from);
    let cluster = config::load_dir(&config_dir).map_err(|e| e.to_string())?;
    let proxydhcp_ports = match options.contains_key("--no-proxydhcp") {
        true => None,
        false => Some((
            port(&options, "--dhcp-port", 67)?,
            port(&options, "--pxe-port", 4011)?,
        )),
    };
    let settle = match options.get("--settle") {
        None => DEFAULT_SETTLE,
        Some(text) => text
            .parse()
            .ok()
            .and_then(|seconds: f64| Duration::try_from_secs_f64(seconds).ok())
            .ok_or_else(|| {
                format!("--settle takes a number of seconds (0 or more), not `{text}`")
            })?,
    };
    let service_config = ServiceConfig {
        root,
        config_dir,
        wake: cluster.wake_macs(),
        cluster,
        config_notice: None,
        address,
        listen: address,
        http_port: port(&options, "--http-port", 80)?,
        tftp_port: port(&options, "--tftp-port", 69)?,
        proxydhcp_ports,
        interface: options.get("--interface").map(|s| s.to_string()),
        wake_interface: options.get("--interface").map(|s| s.to_string()),
        identity: None,
        announce: WatchConfig {
            port: port(&options, "--announce-port", ANNOUNCE_PORT)?,
            interface: options.get("--interface").map(|s| s.to_string()),
            settle,
            ..WatchConfig::default()
        },
    };
    let service = service::start(&service_config).map_err(|e| e.to_string())?;
    // The servers run on their own threads until the process is stopped, or until another
    // boot server makes this one stand down.
    loop {
        if let Some(why) = service.wait_stood_down(Duration::from_secs(3600)) {
            return Err(format!("the boot service stood down: {why}"));
        }
    }
}

fn report(words: &[&str]) -> Result<(), String> {
    let options = options(words, &[])?;
    if let Some(unknown) = options
        .keys()
        .find(|k| !["--server", "--config", "--deadline"].contains(k))
    {
        return Err(format!("unknown option `{unknown}`\n{USAGE}"));
    }
    let mut sources = local::Sources::system();
    if let Some(dir) = options.get("--config") {
        sources.config = PathBuf::from(dir);
    }
    let mut outgoing = local::gather(&sources).map_err(|e| e.to_string())?;
    if let Some(server) = options.get("--server") {
        outgoing.server = local::Host0::At(server.to_string());
    }
    let policy = deadline_policy(&options)?;
    let server = host0_url(outgoing.server, &outgoing.secret)?;
    log::info!(
        "report: telling {server} that {} is up",
        outgoing.report.hostname
    );
    let accepted = client::post_report(
        &server,
        outgoing.secret.as_bytes(),
        &outgoing.report,
        &policy,
    )
    .map_err(|e| e.to_string())?;
    println!("{}", accepted.answer);
    Ok(())
}

/// host0's HTTP server: where this host knows it is, else learnt from its announcements.
fn host0_url(host0: local::Host0, secret: &str) -> Result<String, String> {
    match host0 {
        local::Host0::At(server) => Ok(server),
        local::Host0::Announced => await_host0(secret),
    }
}

fn deadline_policy(options: &HashMap<&str, &str>) -> Result<client::RetryPolicy, String> {
    Ok(client::RetryPolicy {
        deadline: match options.get("--deadline") {
            Some(text) => Some(Duration::from_secs(text.parse().map_err(|_| {
                format!("--deadline takes a whole number of seconds, not `{text}`")
            })?)),
            None => None,
        },
        ..client::RetryPolicy::default()
    })
}

fn state_save(words: &[&str]) -> Result<(), String> {
    const KNOWN: &[&str] = &[
        "--root",
        "--server",
        "--config",
        "--name",
        "--base",
        "--deadline",
    ];
    let options = options(words, &[])?;
    if let Some(unknown) = options.keys().find(|k| !KNOWN.contains(k)) {
        return Err(format!("unknown option `{unknown}`\n{USAGE}"));
    }
    let mut sources = local::Sources::system();
    if let Some(dir) = options.get("--config") {
        sources.config = PathBuf::from(dir);
    }
    let secret = config::load_dir(&sources.config)
        .map_err(|e| format!("{e}without the cluster secret the state cannot be signed"))?
        .secret;
    let name = match options.get("--name") {
        Some(name) => name.to_string(),
        None => identity::choose_id(&identity::read_machine_ids(&sources.sys))
            .map(|id| archive::state_file_name(&id.value))
            .ok_or("this machine has no usable serial, UUID or MAC address, so it has no state name; give --name")?,
    };
    let server = match options.get("--server") {
        Some(server) => server.to_string(),
        None => host0_url(
            local::host0_server(&sources).map_err(|e| e.to_string())?,
            &secret,
        )?,
    };
    let target = upload::Target {
        server: &server,
        name: &name,
        secret: &secret,
        base_file: Path::new(options.get("--base").copied().unwrap_or(state::BASE_FILE)),
    };
    let root = Path::new(options.get("--root").copied().unwrap_or("/"));
    match upload::save(root, &target, &deadline_policy(&options)?).map_err(|e| e.to_string())? {
        upload::Saved::Unchanged(hash) => {
            println!("state of {name} unchanged ({}), not sent", &hash[..12])
        }
        upload::Saved::Sent { hash, accepted } => {
            println!(
                "state of {name} ({}) saved: {}",
                &hash[..12],
                accepted.answer
            )
        }
    }
    Ok(())
}

/// Where `pxen state sync` mounts the drive for its writes.
const SYNC_MOUNT: &str = "/run/pxen/state-sync-drive";

fn state_sync() -> Result<(), String> {
    let role = std::fs::read_to_string(dom0::ROLE_FILE).unwrap_or_default();
    if role.trim() != dom0::ROLE_HOST0 {
        println!(
            "state sync: this host is not host0 (see {}); host0 alone writes the drive",
            dom0::ROLE_FILE
        );
        return Ok(());
    }
    let proc_cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("cannot read /proc/cmdline: {e}"))?;
    let (params, _) = cmdline::parse(&proc_cmdline);
    let ram = Path::new(boot::DRIVE_COPY);
    match sync::sync_to_drive(ram, params.drive.as_deref(), Path::new(SYNC_MOUNT)).map_err(|e| e.to_string())? {
        sync::Synced::Written(count) => println!("state sync: {count} host state(s) written to the drive"),
        sync::Synced::NoDrive(count) => println!("state sync: the drive is not plugged in; {count} host state(s) are kept in RAM only until the drive is back"),
    }
    Ok(())
}

/// How long one search for host0's announcements listens (host0 announces every 2 s).
const HOST0_SEARCH: Duration = Duration::from_secs(30);

/// host0's HTTP server, learnt from its announcements, waiting as long as it takes: a host
/// that booted from a drive that did not make it host0 reports once a host0 serves.
fn await_host0(secret: &str) -> Result<String, String> {
    loop {
        match find::find_server(ANNOUNCE_PORT, secret, HOST0_SEARCH).map_err(|e| e.to_string())? {
            // host0's boot service listens on port 80.
            Some(address) => return Ok(format!("http://{address}:80")),
            None => log::warn!(
                "report: no boot server of this cluster announced itself within {HOST0_SEARCH:?}; still listening"
            ),
        }
    }
}

fn status(words: &[&str]) -> Result<(), String> {
    let options = options(words, &["--json"])?;
    if let Some(unknown) = options.keys().find(|k| !["--server", "--json"].contains(k)) {
        return Err(format!("unknown option `{unknown}`\n{USAGE}"));
    }
    let server = match options.get("--server") {
        Some(server) => server.to_string(),
        None => match local::host0_server(&local::Sources::system()).map_err(|e| e.to_string())? {
            local::Host0::At(server) => server,
            local::Host0::Announced => {
                let sources = local::Sources::system();
                let secret = config::load_dir(&sources.config)
                    .map_err(|e| e.to_string())?
                    .secret;
                let found = find::find_server(ANNOUNCE_PORT, &secret, HOST0_SEARCH)
                    .map_err(|e| e.to_string())?;
                let address = found.ok_or(format!(
                    "no boot server of this cluster announced itself within {HOST0_SEARCH:?}; give --server http://HOST0:80"
                ))?;
                format!("http://{address}:80")
            }
        },
    };
    let server = server.as_str();
    let json = options.contains_key("--json");
    let path = if json { "/status.json" } else { "/status.txt" };
    let (code, body) =
        client::get(server, path, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!(
            "{server}{path} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    print!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

fn hostname(words: &[&str]) -> Result<(), String> {
    let options = options(words, &[])?;
    if let Some(unknown) = options.keys().find(|k| !["--sys", "--config"].contains(k)) {
        return Err(format!("unknown option `{unknown}`\n{USAGE}"));
    }
    let sys = PathBuf::from(options.get("--sys").copied().unwrap_or("/sys"));
    let config_dir = options.get("--config").map(PathBuf::from);
    let cluster = match config_dir {
        Some(dir) => config::load_dir(&dir).map_err(|e| e.to_string())?,
        None => config::Cluster::builtin_default(),
    };
    let ids = identity::read_machine_ids(&sys);
    let naming = identity::name_machine(&cluster, &ids)
        .ok_or("this machine has no usable serial, UUID or MAC address")?;
    println!("{}\t{}", naming.hostname, naming.reason);
    Ok(())
}
