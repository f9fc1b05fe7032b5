//! `/init` when the kernel starts it as PID 1; the `pxen` administration command otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pxen::{boot, config, identity, logger};

const USAGE: &str = "\
usage: pxen COMMAND

As PID 1 (the initramfs' /init) this binary boots the host; see the README.

commands:
  config check DIR     check a configuration directory; print every problem with file:line:col
  config default DIR   write the annotated default configuration into DIR (never overwrites)
  hostname [--sys DIR] [--config DIR]
                       print the hostname PXEN gives this machine, and why
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
        ["hostname", rest @ ..] => hostname(rest),
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
    for (name, text) in config::DEFAULT_FILES {
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

fn hostname(options: &[&str]) -> Result<(), String> {
    let mut sys = PathBuf::from("/sys");
    let mut config_dir = None;
    let mut rest = options;
    while let [flag, value, tail @ ..] = rest {
        match *flag {
            "--sys" => sys = PathBuf::from(value),
            "--config" => config_dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option `{flag}`\n{USAGE}")),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("`{}` needs a value\n{USAGE}", rest.join(" ")));
    }
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
