//! Issue 19 item 13: the ways prism is installed. The systemd unit passes
//! `systemd-analyze verify`; the build script the Dockerfile runs makes a stripped
//! binary that starts and serves /healthz (checked by the script the image's
//! HEALTHCHECK runs); the Dockerfile, the compose file and the image's
//! configuration agree on ports, mounts and the image. No container engine is
//! needed: the Dockerfile's steps are these scripts and files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("packaging-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The unit as shipped, with ExecStart pointing at a binary that exists (verify
/// checks that the command is executable): no error and no warning about it.
/// The same unit with a misspelt option does get a warning, so the check can fail.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = read("packaging/prism.service");
    let shipped = "ExecStart=/usr/local/bin/prism serve --config /etc/prism/prism.toml";
    assert!(unit.lines().any(|l| l == shipped), "{unit}");
    assert!(
        unit.lines()
            .any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID")
    );
    for hardening in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "{hardening}");
    }
    let binary = env!("CARGO_BIN_EXE_prism");
    let here = unit.replace(
        "ExecStart=/usr/local/bin/prism ",
        &format!("ExecStart={binary} "),
    );
    let verify = |name: &str, text: &str| -> (bool, Vec<String>) {
        let dir = test_dir(name);
        let path = dir.join("prism.service");
        std::fs::write(&path, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("systemd-analyze runs (scripts/install-test-deps installs systemd)");
        let about_unit = String::from_utf8_lossy(&out.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .filter(|line| line.contains("prism.service"))
            .map(str::to_owned)
            .collect();
        (out.status.success(), about_unit)
    };
    let (ok, complaints) = verify("unit", &here);
    assert!(ok && complaints.is_empty(), "{complaints:#?}");

    let misspelt = here.replace("LockPersonality=yes", "LockPersonalty=yes");
    let (_, complaints) = verify("unit-misspelt", &misspelt);
    assert!(
        complaints.iter().any(|l| l.contains("LockPersonalty")),
        "verify reports a misspelt option: {complaints:#?}"
    );
}

/// The shipped profile strips the binary, and the profile the next test builds
/// with inherits that setting instead of overriding it.
#[test]
fn the_release_profile_strips_and_the_check_profile_inherits_it() {
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let profiles = &manifest["profile"];
    assert_eq!(profiles["release"]["strip"].as_bool(), Some(true));
    assert!(profiles["release"].get("debug").is_none());
    let check = &profiles["packaging-check"];
    assert_eq!(check["inherits"].as_str(), Some("release"));
    assert!(check.get("strip").is_none(), "{check}");
    assert!(check.get("debug").is_none(), "{check}");
    // Profiling keeps its symbols apart.
    assert_eq!(profiles["profiling"]["inherits"].as_str(), Some("release"));
}

/// The ELF section names of `binary` (`readelf -S`).
fn sections(binary: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-S", "--wide"])
        .arg(binary)
        .output()
        .expect("readelf runs (binutils)");
    assert!(out.status.success(), "readelf -S {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("] ")?;
            rest.split_whitespace()
                .next()
                .filter(|name| name.starts_with('.'))
                .map(str::to_owned)
        })
        .collect()
}

/// Runs packaging/healthcheck.sh against `addr`: whether it says healthy.
fn healthcheck(addr: &str) -> bool {
    Command::new(repo().join("packaging/healthcheck.sh"))
        .arg(addr)
        .stdin(Stdio::null())
        .status()
        .expect("the healthcheck script runs")
        .success()
}

/// Kills (by PID) and reaps a child when dropped, so that a failing assertion
/// leaves no prism behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Dockerfile's build step, packaging/build-release.sh, run here through the
/// release profile's settings (strip included; see Cargo.toml's
/// `packaging-check`): the binary it leaves has no symbol table and no debug
/// information, is much smaller than the debug build, and runs: `prism serve` on
/// the image's own configuration (with a users directory of the test's) answers
/// the image's HEALTHCHECK script, which fails on a port where nothing listens.
#[test]
fn the_docker_build_script_makes_a_stripped_binary_that_serves_healthz() {
    let dir = test_dir("build");
    let out = dir.join("out");
    let status = Command::new(repo().join("packaging/build-release.sh"))
        .arg(&out)
        .args(["--profile", "packaging-check"])
        // A target directory of its own: `cargo test` holds the lock on the one it
        // runs from. Kept between runs (only the first builds everything).
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging-target"),
        )
        .stdin(Stdio::null())
        .status()
        .expect("the build script runs");
    assert!(status.success(), "packaging/build-release.sh: {status}");
    let binary = out.join("prism");
    let names = sections(&binary);
    assert!(names.iter().any(|n| n == ".text"), "{names:?}");
    for debug in [".symtab", ".strtab", ".debug_info", ".debug_line"] {
        assert!(!names.iter().any(|n| n == debug), "{debug} in {names:?}");
    }
    // The test's own (debug) binary has them: the check can tell.
    let debug_names = sections(Path::new(env!("CARGO_BIN_EXE_prism")));
    assert!(
        debug_names.iter().any(|n| n == ".symtab"),
        "{debug_names:?}"
    );

    // The image's configuration, with the listeners on loopback port 0 and the
    // users directory moved to the test's.
    let users = dir.join("users");
    std::fs::create_dir_all(&users).unwrap();
    let mut child = Command::new(&binary);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("PRISM_")
        {
            child.env_remove(name);
        }
    }
    let log = dir.join("prism.log");
    let child = child
        .args(["serve", "--config"])
        .arg(repo().join("packaging/prism.toml"))
        .args(["--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("PRISM_USERS__DIR", &users)
        .env("PRISM_STANDBY__ENABLED", "false")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the built prism starts");
    let mut child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|line| line.split("http_addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            break addr.to_owned();
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("the built prism exited: {status}\n{text}");
        }
        assert!(Instant::now() < deadline, "no http_addr logged:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(healthcheck(&http), "the HEALTHCHECK script against {http}");

    // SIGTERM by PID: a clean exit; then nothing listens there and the same
    // script says unhealthy.
    let pid = libc::pid_t::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    assert!(
        !healthcheck(&http),
        "healthy with nothing listening on {http}"
    );
}

/// One Dockerfile instruction per logical line (continuations joined).
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
            (word.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// The Dockerfile is multi-stage with the build script as its build step, runs
/// as `prism` (not root) with a HEALTHCHECK that is the tested script on the
/// image's HTTP port, EXPOSEs the ports packaging/prism.toml listens on; the
/// compose file (parsed as YAML) builds that Dockerfile, publishes the same
/// container ports and mounts the configuration file and the users directory
/// where the image's configuration expects them; the image's configuration loads.
#[test]
fn the_dockerfile_compose_file_and_image_config_agree() {
    let docker = instructions(&read("Dockerfile"));
    let all = |word: &str| -> Vec<&str> {
        docker
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    let from = all("FROM");
    assert_eq!(from, ["rust:1-bookworm AS build", "debian:bookworm-slim"]);
    assert!(all("RUN").contains(&"packaging/build-release.sh /out"));
    let runtime_run = all("RUN").join(" ");
    for package in ["ffmpeg", "ca-certificates"] {
        assert!(runtime_run.contains(package), "{package}: {runtime_run}");
    }
    assert_eq!(all("USER"), ["prism"]);
    assert!(all("COPY").contains(&"--from=build /out/prism /usr/local/bin/prism"));
    assert!(all("COPY").contains(&"packaging/healthcheck.sh /usr/local/bin/prism-healthcheck"));
    assert!(all("COPY").contains(&"packaging/prism.toml /etc/prism/prism.toml"));
    let healthcheck = all("HEALTHCHECK").join(" ");
    assert!(
        healthcheck.ends_with(r#"CMD ["prism-healthcheck", "127.0.0.1:8080"]"#),
        "{healthcheck}"
    );
    assert_eq!(
        all("CMD"),
        [r#"["serve", "--config", "/etc/prism/prism.toml"]"#]
    );
    let exposed: Vec<u16> = all("EXPOSE")
        .iter()
        .flat_map(|rest| rest.split_whitespace())
        .map(|port| port.parse().unwrap())
        .collect();

    // The image's configuration: valid, and listening on the EXPOSEd ports.
    let config = prism::config::Config::load(
        Some(&repo().join("packaging/prism.toml")),
        &prism::config::Overrides::default(),
    );
    let config = match config {
        Ok(config) => config,
        // A PRISM_* variable of the test's environment may be set on purpose.
        Err(prism::config::ConfigError::UnknownEnv(unknown)) => panic!("{unknown}"),
        Err(err) => panic!("packaging/prism.toml: {err}"),
    };
    let mut listening = vec![config.rtmp.listen.port(), config.http.listen.port()];
    listening.sort_unstable();
    let mut sorted = exposed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, listening);
    assert!(config.rtmp.listen.ip().is_unspecified());
    assert!(config.http.listen.ip().is_unspecified());
    assert_eq!(
        config.users.dir.as_deref(),
        Some(Path::new("/etc/prism/users"))
    );
    assert!(
        all("VOLUME")
            .iter()
            .any(|v| v.contains("\"/etc/prism/users\""))
    );

    // The compose file.
    let compose = yaml_rust2::YamlLoader::load_from_str(&read("packaging/compose.yaml"))
        .expect("compose.yaml is YAML");
    let service = &compose[0]["services"]["prism"];
    assert_eq!(service["build"]["dockerfile"].as_str(), Some("Dockerfile"));
    let context = service["build"]["context"].as_str().unwrap();
    assert!(
        repo()
            .join("packaging")
            .join(context)
            .join("Dockerfile")
            .is_file()
    );
    assert!(service["image"].as_str().unwrap().starts_with("prism"));
    let mut container_ports: Vec<u16> = service["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|port| {
            let port = port.as_str().unwrap();
            port.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    container_ports.sort_unstable();
    assert_eq!(container_ports, sorted);
    let mounts: Vec<(String, String)> = service["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|volume| {
            let parts: Vec<&str> = volume.as_str().unwrap().split(':').collect();
            (parts[0].to_owned(), parts[1].to_owned())
        })
        .collect();
    let target_of = |target: &str| {
        mounts
            .iter()
            .find(|(_, t)| t == target)
            .unwrap_or_else(|| panic!("a mount at {target}: {mounts:?}"))
            .0
            .clone()
    };
    // The configuration mounted is the one tested here.
    assert_eq!(target_of("/etc/prism/prism.toml"), "./prism.toml");
    target_of("/etc/prism/users");
    assert!(
        service["environment"]["PRISM_HTTP__TOKEN"]
            .as_str()
            .is_some()
    );
}
