//! Issue 22 item 6: the cluster's deployment files agree with prism and with each
//! other, and the balancer's configurations are valid to HAProxy itself (`haproxy
//! -c`): the compose file's HAProxy balances over exactly its prism services, with
//! a PROXY header and a health check on /healthz; the node configuration loads
//! and expects the header; the Kubernetes Deployment drains in its preStop hook,
//! gives the drain longer than `drain_timeout_secs`, uses /healthz for readiness
//! only. No container engine or Kubernetes is needed.

mod common;

use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `haproxy -c` on a configuration: valid, or the test fails with HAProxy's words.
fn haproxy_accepts(config: &Path) {
    let haproxy = common::sinks::on_path("haproxy").unwrap_or_else(|| common::require("haproxy"));
    let out = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A prism configuration file as `prism serve --config` would load it, with the
/// API token the deployment gives in the environment (`PRISM_HTTP__TOKEN`).
fn load_config(path: &Path) -> prism::Config {
    let mut table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let http = table.entry("http").or_insert(toml::Table::new().into());
    http.as_table_mut()
        .unwrap()
        .insert("token".into(), "from-the-environment".into());
    let with_token = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy-config-{}.toml", std::process::id()));
    std::fs::write(&with_token, toml::to_string(&table).unwrap()).unwrap();
    let loaded =
        prism::config::Config::load(Some(&with_token), &prism::config::Overrides::default());
    let _ = std::fs::remove_file(&with_token);
    match loaded {
        Ok(config) => config,
        Err(err) => panic!("{}: {err}", path.display()),
    }
}

/// A compose service's settings, through its `<<: *anchor` merge when it has one.
fn setting<'a>(service: &'a Yaml, key: &str) -> &'a Yaml {
    match &service[key] {
        Yaml::BadValue => &service["<<"][key],
        value => value,
    }
}

#[test]
fn the_compose_cluster_balances_over_its_nodes_with_proxy_headers_and_health_checks() {
    haproxy_accepts(&repo().join("deploy/haproxy.cfg"));
    let haproxy = read("deploy/haproxy.cfg");
    let compose = YamlLoader::load_from_str(&read("deploy/compose.yaml")).expect("YAML");
    let services = compose[0]["services"].as_hash().expect("services");
    let nodes: Vec<&str> = services
        .keys()
        .filter_map(Yaml::as_str)
        .filter(|name| name.starts_with("prism"))
        .collect();
    assert_eq!(nodes, ["prism1", "prism2", "prism3"]);
    assert!(services.contains_key(&Yaml::from_str("redis")));
    for node in &nodes {
        let service = &compose[0]["services"][*node];
        let env = &service["environment"];
        assert_eq!(env["PRISM_CLUSTER__NODE_ID"].as_str(), Some(*node));
        assert_eq!(
            env["PRISM_CLUSTER__ADVERTISE_RTMP"].as_str(),
            Some(format!("{node}:1935").as_str())
        );
        let command: Vec<&str> = setting(service, "command")
            .as_vec()
            .expect("a command")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(command, ["serve", "--config", "/etc/prism/node.toml"]);
        let line = format!("server {node} {node}:1935 send-proxy-v2 check port 8080");
        assert!(
            haproxy.contains(&line),
            "haproxy.cfg balances over {node}: {line}"
        );
    }
    assert!(haproxy.contains("balance leastconn"));
    assert!(haproxy.contains("option httpchk GET /healthz"));
    let mounts = compose[0]["services"]["haproxy"]["volumes"][0]
        .as_str()
        .unwrap();
    assert!(mounts.starts_with("./haproxy.cfg:"), "{mounts}");

    let node = load_config(&repo().join("deploy/node.toml"));
    assert!(node.rtmp.proxy_protocol, "behind HAProxy's send-proxy-v2");
    assert_eq!(
        node.cluster.redis_url.as_deref(),
        Some("redis://redis:6379")
    );
    assert_eq!(node.rtmp.listen.port(), 1935);
    assert_eq!(node.http.listen.port(), 8080);
}

#[test]
fn the_kubernetes_deployment_drains_before_it_stops() {
    let docs = YamlLoader::load_from_str(&read("deploy/kubernetes/prism.yaml")).expect("YAML");
    let by_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("a {kind}"))
    };
    let node_toml = by_kind("ConfigMap")["data"]["node.toml"].as_str().unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("node.toml"), node_toml).unwrap();
    let node = load_config(&dir.join("node.toml"));
    assert!(node.rtmp.proxy_protocol);

    let pod = &by_kind("Deployment")["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let drain = i64::try_from(node.cluster.drain_timeout_secs).unwrap();
    assert!(
        grace > drain,
        "the pod outlives its drain: {grace} > {drain}"
    );
    let container = &pod["containers"][0];
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .unwrap();
    assert!(pre_stop.contains("kill -USR1 1"), "{pre_stop}");
    assert!(
        pre_stop.contains("while kill -0 1"),
        "waits for prism to exit: {pre_stop}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert!(
        container["livenessProbe"]["httpGet"].is_badvalue(),
        "a draining pod (503 on /healthz) must not be restarted"
    );
    let env = container["env"].as_vec().unwrap();
    let advertised = env
        .iter()
        .find(|e| e["name"].as_str() == Some("PRISM_CLUSTER__ADVERTISE_RTMP"))
        .and_then(|e| e["value"].as_str());
    assert_eq!(advertised, Some("$(POD_IP):1935"));

    // HAProxy's configuration as the ConfigMap holds it.
    let docs = YamlLoader::load_from_str(&read("deploy/kubernetes/haproxy.yaml")).expect("YAML");
    let config = docs
        .iter()
        .find_map(|d| d["data"]["haproxy.cfg"].as_str())
        .expect("haproxy.cfg");
    assert!(config.contains("send-proxy-v2") && config.contains("GET /healthz"));
    std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
    haproxy_accepts(&dir.join("haproxy.cfg"));
    YamlLoader::load_from_str(&read("deploy/kubernetes/redis.yaml")).expect("YAML");
    let _ = std::fs::remove_dir_all(&dir);
}
