//! The deployment files bundled in `embedded/` — `deploy/compose.yaml`, `deploy/images.toml`,
//! `monitoring/prometheus/{prometheus,alerts}.yml`, the Grafana provisioning and dashboards —
//! checked without Docker, as the binary ships them (`acgs embedded export`):
//!
//! - Prometheus' own `promtool` accepts the configuration and the rules, and the rules' unit tests
//!   (`tests/support/alerts_test.yml`) pass; the scrape targets are exactly the seven services by
//!   DNS name and port, labelled as `http_requests_total{service=…}` is.
//! - Every dashboard is provisioning JSON with the fields Grafana needs, under the three titles
//!   DESIGN §6 names, on the data source the provisioning creates.
//! - Every metric a dashboard or an alert names is really exported: the seven services run in this
//!   process, get real traffic (logins, a decision, a policy proposal proved by cvc5 and voted
//!   into force, a ratified amendment), and their `/metrics` are scraped.
//! - The compose file names every service, pins every image (the defaults of `images.toml`),
//!   publishes only on 127.0.0.1, requires every secret with `${VAR:?…}`, hardens every acgs
//!   container, and gives each one an environment that `acgs`'s configuration really reads.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use acgs::config::{Config, Sources};
use acgs::embedded::EMBEDDED;
use acgs::kernel::service::ServiceName;
use serde_json::{Value, json};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

const PROMETHEUS_DIR: &str = "monitoring/prometheus";
const DASHBOARDS_DIR: &str = "monitoring/grafana/dashboards";
const COMPOSE: &str = "deploy/compose.yaml";

/// The secrets `.env` holds, every one required by the compose file.
const SECRETS: [&str; 6] = [
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "NATS_PASSWORD",
    "ACGS_ADMIN_PASSWORD",
    "ACGS_SERVICE_CLIENT_SECRET",
    "GRAFANA_ADMIN_PASSWORD",
];

/// The dashboards DESIGN §6 names.
const DASHBOARD_TITLES: [&str; 3] =
    ["ACGS Docker-in-Docker Monitoring", "Service Health Overview", "Constitutional Compliance Tracking"];

/// A file of the embedded tree, as compiled into the binary.
fn shipped(path: &str) -> &'static str {
    EMBEDDED
        .get_file(path)
        .unwrap_or_else(|| panic!("embedded/{path} is not in the binary"))
        .contents_utf8()
        .unwrap_or_else(|| panic!("embedded/{path} is not UTF-8"))
}

/// The embedded tree written out exactly as `acgs embedded export DIR` writes it.
fn exported() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    acgs::tools::export::export(&EMBEDDED, dir.path(), false).expect("export");
    dir
}

/// One YAML document, with compose-style merge keys (`<<: *anchor`) applied.
fn yaml(text: &str, what: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{what}: one YAML document");
    merge_keys(docs.remove(0))
}

/// Applies YAML merge keys: the mapping (or list of mappings) under `<<` fills in the keys the
/// mapping itself does not set. Aliases are already resolved by the loader.
fn merge_keys(node: Yaml) -> Yaml {
    match node {
        Yaml::Hash(hash) => {
            let mut own = Hash::new();
            let mut inherited = Vec::new();
            for (key, value) in hash {
                let value = merge_keys(value);
                if key.as_str() == Some("<<") {
                    match value {
                        Yaml::Hash(h) => inherited.push(h),
                        Yaml::Array(list) => inherited.extend(list.into_iter().filter_map(|y| y.into_hash())),
                        other => panic!("a merge key needs a mapping, got {other:?}"),
                    }
                } else {
                    own.insert(key, value);
                }
            }
            for h in inherited {
                for (key, value) in h {
                    if !own.contains_key(&key) {
                        own.insert(key, value);
                    }
                }
            }
            Yaml::Hash(own)
        }
        Yaml::Array(list) => Yaml::Array(list.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

fn strings(node: &Yaml) -> Vec<String> {
    node.as_vec()
        .unwrap_or_else(|| panic!("expected a list, got {node:?}"))
        .iter()
        .map(|y| scalar(y).unwrap_or_else(|| panic!("expected a scalar, got {y:?}")))
        .collect()
}

/// A scalar as compose sees it (compose takes `true`, `1` and `"1"` alike in the places used here).
fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn keys(node: &Yaml) -> BTreeSet<String> {
    node.as_hash()
        .unwrap_or_else(|| panic!("expected a mapping, got {node:?}"))
        .keys()
        .map(|k| k.as_str().expect("string key").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PromQL: which metrics an expression names

/// A metric selector in a PromQL expression: the metric's name and the label names its matchers use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    name: String,
    labels: Vec<String>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The index after the string literal starting at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    let quote = b[i];
    i += 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    panic!("unterminated string in {:?}", String::from_utf8_lossy(b));
}

/// The index after the bracket closing the one at `i` (strings and nesting respected).
fn skip_group(b: &[u8], mut i: usize) -> usize {
    let (open, close) = (
        b[i],
        match b[i] {
            b'(' => b')',
            b'{' => b'}',
            b'[' => b']',
            other => panic!("not a bracket: {}", other as char),
        },
    );
    let mut depth = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced {} in {:?}", open as char, String::from_utf8_lossy(b));
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn word_at(s: &str, i: usize) -> &str {
    let b = s.as_bytes();
    let mut end = i;
    while end < b.len() && is_ident(b[end]) {
        end += 1;
    }
    &s[i..end]
}

/// The label names of the matchers between a selector's braces.
fn matcher_labels(inner: &str) -> Vec<String> {
    let b = inner.as_bytes();
    let mut labels = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            c if is_ident_start(c) => {
                let name = word_at(inner, i);
                labels.push(name.to_string());
                i += name.len();
            }
            _ => i += 1,
        }
    }
    labels
}

/// Every metric selector in a PromQL expression (Grafana's `$variables` allowed). Functions,
/// aggregations, keywords, label lists of `by`/`on`/…, numbers, durations and strings are not
/// metric names.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if matches!(c, b'[' | b'{') {
            i = skip_group(b, i);
        } else if c == b'$' {
            i += 1;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let word = word_at(expr, i);
            i += word.len();
            let next = skip_spaces(b, i);
            let lower = word.to_ascii_lowercase();
            if matches!(lower.as_str(), "by" | "without" | "on" | "ignoring" | "group_left" | "group_right") {
                if next < b.len() && b[next] == b'(' {
                    i = skip_group(b, next);
                }
                continue;
            }
            if matches!(lower.as_str(), "and" | "or" | "unless" | "bool" | "offset" | "inf" | "nan") {
                continue;
            }
            // A function call, or an aggregation written `sum by (…) (…)`.
            if (next < b.len() && b[next] == b'(') || matches!(word_at(expr, next), "by" | "without") {
                continue;
            }
            let mut labels = Vec::new();
            if next < b.len() && b[next] == b'{' {
                let end = skip_group(b, next);
                labels = matcher_labels(&expr[next + 1..end - 1]);
                i = end;
            }
            out.push(Selector { name: word.to_string(), labels });
        } else {
            i += 1;
        }
    }
    out
}

/// Names Prometheus makes up itself rather than scraping from a service.
fn prometheus_internal(name: &str) -> bool {
    name == "up"
        || name == "ALERTS"
        || name == "ALERTS_FOR_STATE"
        || name.starts_with("scrape_")
        || name.starts_with("prometheus_")
}

#[test]
fn the_promql_scanner_finds_metric_names_and_only_those() {
    let found = selectors(
        r#"histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{job="acgs", route!~"/a|{b}"}[$__rate_interval]))) > 1
           and on () sum without (x) (acgs_decisions_total{outcome="deny"} offset 5m) / ignoring(outcome) group_left count(up) or vector(0)
           unless time() - process_start_time_seconds > bool 1e3 and max_over_time(acgs_log_entries[1h]) < Inf"#,
    );
    let expected = [
        ("http_request_duration_seconds_bucket", vec!["job", "route"]),
        ("acgs_decisions_total", vec!["outcome"]),
        ("up", vec![]),
        ("process_start_time_seconds", vec![]),
        ("acgs_log_entries", vec![]),
    ];
    assert_eq!(
        found,
        expected
            .iter()
            .map(|(n, l)| Selector { name: n.to_string(), labels: l.iter().map(|s| s.to_string()).collect() })
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// promtool from Debian's `prometheus` package (scripts/test.sh installs it).
fn promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new("promtool").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run promtool ({e}): run scripts/test.sh, which installs Debian's prometheus package for it")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    text
}

#[test]
fn promtool_accepts_the_configuration_and_the_rules_and_their_unit_tests_pass() {
    let tree = exported();
    let dir = tree.path().join(PROMETHEUS_DIR);
    // The configuration names its rule file, which must load from beside it.
    let out = promtool(&["check", "config", "prometheus.yml"], &dir);
    assert!(out.contains("1 rule files found"), "{out}");
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/alerts_test.yml"),
        dir.join("alerts_test.yml"),
    )
    .expect("copy the rule tests");
    let out = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
}

fn seconds(duration: &str) -> u64 {
    let (n, unit) = duration.split_at(duration.find(|c: char| !c.is_ascii_digit()).expect("a unit"));
    let n: u64 = n.parse().expect("a number");
    match unit {
        "s" => n,
        "m" => n * 60,
        other => panic!("unexpected unit {other} in {duration}"),
    }
}

#[test]
fn prometheus_scrapes_exactly_the_seven_services_by_name_and_port() {
    let config = yaml(shipped(&format!("{PROMETHEUS_DIR}/prometheus.yml")), "prometheus.yml");
    assert_eq!(strings(&config["rule_files"]), ["alerts.yml"]);
    let interval = seconds(config["global"]["scrape_interval"].as_str().expect("scrape_interval"));
    assert!((5..=15).contains(&interval), "scrape interval {interval}s");

    let jobs = config["scrape_configs"].as_vec().expect("scrape_configs");
    let job = |name: &str| {
        jobs.iter().find(|j| j["job_name"].as_str() == Some(name)).unwrap_or_else(|| panic!("no job {name}"))
    };
    let acgs = job("acgs");
    // The services export `service` on their HTTP metrics themselves, with the same value.
    assert_eq!(acgs["honor_labels"].as_bool(), Some(true));
    let mut targets = BTreeMap::new();
    for group in acgs["static_configs"].as_vec().expect("static_configs") {
        let service = group["labels"]["service"].as_str().expect("a service label").to_string();
        for target in strings(&group["targets"]) {
            assert!(targets.insert(target, service.clone()).is_none(), "a target twice");
        }
    }
    let expected: BTreeMap<String, String> = ServiceName::ALL
        .iter()
        .map(|s| (format!("{s}:{}", Config::defaults_only().port(*s)), s.as_str().to_string()))
        .collect();
    assert_eq!(targets, expected);
    assert_eq!(strings(&job("prometheus")["static_configs"][0]["targets"]), ["localhost:9090"]);
    assert_eq!(jobs.len(), 2, "only the services and Prometheus itself");
}

/// Every rule of alerts.yml.
fn alert_rules() -> Vec<Yaml> {
    let rules = yaml(shipped(&format!("{PROMETHEUS_DIR}/alerts.yml")), "alerts.yml");
    rules["groups"].as_vec().expect("groups").iter().flat_map(|g| g["rules"].as_vec().expect("rules").clone()).collect()
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_description() {
    let rules = alert_rules();
    assert!(rules.len() >= 15, "{} rules", rules.len());
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("alerting rules only");
        assert!(names.insert(name), "{name} twice");
        assert!(name.starts_with("ACGS"), "{name}");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity:?}");
        for annotation in ["summary", "description"] {
            assert!(!rule["annotations"][annotation].as_str().unwrap_or_default().is_empty(), "{name}: {annotation}");
        }
    }
    // What the brief of this stack asks alerts for.
    for name in [
        "ACGSServiceDown",
        "ACGSHighErrorRate",
        "ACGSHighLatencyP99",
        "ACGSComplianceBelowOne",
        "ACGSDecisionErrors",
        "ACGSDenySpike",
        "ACGSIntegrityLogStalled",
        "ACGSDecisionLogBacklog",
    ] {
        assert!(names.contains(name), "no {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Grafana

/// The dashboards, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    let dir = EMBEDDED.get_dir(DASHBOARDS_DIR).expect("the dashboards are embedded");
    dir.files()
        .map(|f| {
            let name = f.path().file_name().expect("name").to_string_lossy().to_string();
            assert!(name.ends_with(".json"), "{name} in {DASHBOARDS_DIR}");
            let value = serde_json::from_slice(f.contents()).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect()
}

fn is_prometheus_source(ds: &Value) -> bool {
    ds["uid"] == "prometheus" && ds["type"] == "prometheus"
}

/// Every PromQL expression of the dashboards: panel targets and query variables.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for (file, board) in dashboards() {
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push((format!("{file}: {}", panel["title"]), target["expr"].as_str().expect("expr").to_string()));
            }
        }
        for var in board["templating"]["list"].as_array().expect("templating") {
            let query = var["query"]["query"].as_str().expect("a query variable");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(expr, _label)| expr.to_string())
                .unwrap_or_else(|| panic!("{file}: variable {} is not label_values(expr, label)", var["name"]));
            exprs.push((format!("{file}: variable {}", var["name"]), inner));
        }
    }
    exprs
}

#[test]
fn grafana_provisioning_points_at_prometheus_and_the_dashboards_folder() {
    let sources = yaml(shipped("monitoring/grafana/provisioning/datasources/prometheus.yml"), "datasources");
    assert_eq!(sources["apiVersion"].as_i64(), Some(1));
    let list = sources["datasources"].as_vec().expect("datasources");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["uid"].as_str(), Some("prometheus"));
    assert_eq!(list[0]["type"].as_str(), Some("prometheus"));
    assert_eq!(list[0]["url"].as_str(), Some("http://prometheus:9090"));
    assert_eq!(list[0]["access"].as_str(), Some("proxy"));

    let providers = yaml(shipped("monitoring/grafana/provisioning/dashboards/acgs.yml"), "dashboard providers");
    assert_eq!(providers["apiVersion"].as_i64(), Some(1));
    let list = providers["providers"].as_vec().expect("providers");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["type"].as_str(), Some("file"));
    assert_eq!(list[0]["options"]["path"].as_str(), Some("/etc/grafana/dashboards"));
}

#[test]
fn the_three_dashboards_are_valid_provisioning_json() {
    let boards = dashboards();
    let titles: BTreeSet<&str> = boards.values().map(|b| b["title"].as_str().expect("title")).collect();
    assert_eq!(titles, DASHBOARD_TITLES.into_iter().collect());
    let mut uids = BTreeSet::new();
    for (file, board) in &boards {
        let uid = board["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid:?}");
        assert!(uids.insert(uid), "{file}: uid {uid} twice");
        assert!(board["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{file}: schemaVersion");
        assert!(board["id"].is_null(), "{file}: provisioned dashboards carry no database id");
        assert!(board["tags"].as_array().expect("tags").contains(&json!("acgs")), "{file}: tag acgs");
        let panels = board["panels"].as_array().expect("panels");
        assert!(panels.len() >= 8, "{file}: {} panels", panels.len());
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without a title");
            assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{file}: panel id twice");
            let pos = &panel["gridPos"];
            let (x, w, h) = (pos["x"].as_u64(), pos["w"].as_u64(), pos["h"].as_u64());
            assert!(pos["y"].is_u64() && h.is_some_and(|h| h > 0), "{file}: {title}: gridPos {pos}");
            assert!(x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24), "{file}: {title}: gridPos {pos}");
            if panel["type"] == "row" {
                continue;
            }
            assert!(is_prometheus_source(&panel["datasource"]), "{file}: {title}: datasource {}", panel["datasource"]);
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title}: no targets");
            let mut refs = BTreeSet::new();
            for target in targets {
                assert!(is_prometheus_source(&target["datasource"]), "{file}: {title}: target datasource");
                assert!(refs.insert(target["refId"].as_str().expect("refId")), "{file}: {title}: refId twice");
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!selectors(expr).is_empty(), "{file}: {title}: expr {expr:?} names no metric");
            }
        }
        for var in board["templating"]["list"].as_array().expect("templating") {
            assert!(is_prometheus_source(&var["datasource"]), "{file}: variable {}", var["name"]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The metrics: what the files name, against what the services export

/// Every PromQL expression of the alert rules, with the `query "…"` expressions in their
/// annotation templates.
fn alert_exprs() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().expect("alert").to_string();
        exprs.push((name.clone(), rule["expr"].as_str().expect("expr").to_string()));
        for (_, text) in rule["annotations"].as_hash().expect("annotations") {
            let mut rest = text.as_str().expect("text");
            while let Some(at) = rest.find("query \"") {
                let tail = &rest[at + 7..];
                let end = tail.find('"').expect("closing quote");
                exprs.push((format!("{name} annotation"), tail[..end].replace("\\\"", "\"")));
                rest = &tail[end..];
            }
        }
    }
    exprs
}

/// A metric family on a service's /metrics: its type and the label names its samples carry.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    services: BTreeSet<String>,
}

/// Reads the Prometheus text format into `families`.
fn read_exposition(service: &str, text: &str, families: &mut BTreeMap<String, Family>) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            let family = families.entry(name.to_string()).or_default();
            family.kind = kind.to_string();
            family.services.insert(service.to_string());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).expect("a sample line");
        let sample = &line[..end];
        let family_name = if families.contains_key(sample) {
            sample.to_string()
        } else {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| sample.strip_suffix(s).filter(|base| families.contains_key(*base)))
                .unwrap_or_else(|| panic!("{service}: sample {sample} has no TYPE line"))
                .to_string()
        };
        if line[end..].starts_with('{') {
            let close = skip_group(line.as_bytes(), end);
            let labels = matcher_labels(&line[end + 1..close - 1]);
            families.get_mut(&family_name).expect("family").labels.extend(labels);
        }
    }
}

const PASSWORD: &str = "a-long-password-1";

/// The policy the proposal adds to the genesis set (as in tests/proposals.rs).
const READ_PUBLIC: &str = r#"
@id("agents-read-public-datasets")
@principle("least-privilege")
permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Dataset)
  when { resource.classification == "public" && !context.irreversible };
"#;

async fn post(app: &common::TestApp, service: ServiceName, path: &str, token: &str, body: Value) -> Value {
    let response = app.http.post(app.url(service, path)).bearer_auth(token).json(&body).send().await.expect("POST");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

/// Real traffic on every path whose metrics the files name: logins and tokens of every grant
/// in use, a decision, a policy proposal proved by cvc5 and voted into force, a ratified
/// amendment, and the compliance score of the set in force.
async fn exercise(app: &common::TestApp) {
    for service in ServiceName::ALL {
        assert_eq!(app.get(&app.url(service, "/health"), None).await.status(), 200, "{service}");
    }
    let admin = app.admin_token().await;
    assert!(!app.login("admin", "not-the-password").await.status().is_success());
    app.create_user(&admin, "stan", PASSWORD, &["steward"]).await;
    app.create_user(&admin, "cora", PASSWORD, &["council"]).await;
    let steward = app.tokens("stan", PASSWORD).await.0;
    let council = app.tokens("cora", PASSWORD).await.0;
    let agent = app.client_token(&admin, "agent-one", &["agent"]).await;

    let decision = post(
        app,
        ServiceName::Consensus,
        "/api/v1/decide",
        &agent,
        json!({
            "principal": { "type": "Acgs::Agent", "id": "a1" },
            "action": { "type": "Acgs::Action", "id": "execute" },
            "resource": { "type": "Acgs::Tool", "id": "t1" },
            "context": { "irreversible": false, "human_approved": false },
            "entities": [
                { "uid": { "type": "Acgs::Agent", "id": "a1" }, "parents": [],
                  "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 } },
                { "uid": { "type": "Acgs::Tool", "id": "t1" }, "parents": [], "attrs": { "risk": "low" } }
            ]
        }),
    )
    .await;
    assert_eq!(decision["decision"], "allow", "{decision}");

    // A policy proposal: proved, voted, activated.
    let active: Value = app
        .get(&app.url(ServiceName::Consensus, "/api/v1/policy-sets/active"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let policies = format!("{}{READ_PUBLIC}", active["policies"].as_str().expect("policies"));
    let proposal = post(
        app,
        ServiceName::Consensus,
        "/api/v1/proposals",
        &steward,
        json!({ "title": "Public datasets", "rationale": "reference data", "policies": policies }),
    )
    .await;
    let id = proposal["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let p: Value = app
            .get(&app.url(ServiceName::Consensus, &format!("/api/v1/proposals/{id}")), Some(&admin))
            .await
            .json()
            .await
            .expect("json");
        if p["status"] != "verifying" {
            break p["status"].clone();
        }
        assert!(Instant::now() < deadline, "proposal {id} still verifying after 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, "voting");
    post(
        app,
        ServiceName::Consensus,
        &format!("/api/v1/proposals/{id}/votes"),
        &steward,
        json!({ "choice": "approve" }),
    )
    .await;
    let closed = post(app, ServiceName::Consensus, &format!("/api/v1/proposals/{id}/close"), &steward, json!({})).await;
    assert_eq!(closed["status"], "activated", "{closed}");

    // An amendment: opened, voted, ratified.
    let amendment = post(
        app,
        ServiceName::Constitution,
        "/api/v1/amendments",
        &council,
        json!({ "title": "Explanations", "rationale": "Because.", "changes": [{ "op": "add_principle", "principle": {
            "id": "explanation", "title": "Right to explanation", "category": "transparency", "priority": 70,
            "text": "Anyone affected by an automated decision can obtain the reasons for it." } }] }),
    )
    .await;
    let id = amendment["id"].as_str().expect("id").to_string();
    post(app, ServiceName::Constitution, &format!("/api/v1/amendments/{id}/open"), &council, json!({})).await;
    post(
        app,
        ServiceName::Constitution,
        &format!("/api/v1/amendments/{id}/votes"),
        &council,
        json!({ "choice": "approve" }),
    )
    .await;
    let closed =
        post(app, ServiceName::Constitution, &format!("/api/v1/amendments/{id}/close"), &council, json!({})).await;
    assert_eq!(closed["status"], "ratified", "{closed}");
}

/// Scrapes every service; waits (up to 60 s) until the compliance score of the set in force has
/// been recorded, since it is exported only from its first score on.
async fn scrape_all(app: &common::TestApp) -> BTreeMap<String, Family> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut families = BTreeMap::new();
        for service in ServiceName::ALL {
            let response = app.get(&app.url(service, "/metrics"), None).await;
            assert_eq!(response.status(), 200, "{service} /metrics");
            let text = response.text().await.expect("text");
            read_exposition(service.as_str(), &text, &mut families);
        }
        if families.contains_key("acgs_constitutional_compliance_score") {
            return families;
        }
        assert!(Instant::now() < deadline, "no compliance score on any service after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_name_is_exported_by_the_services() {
    let cvc5 = common::cedar::cvc5();
    let app = common::spawn_app_with(move |c| c.verification.cvc5 = cvc5).await;
    exercise(&app).await;
    let families = scrape_all(&app).await;

    // Labels Prometheus adds to every scraped series (prometheus.yml).
    let target_labels = ["job", "instance", "service"];
    let mut problems = Vec::new();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let exprs: Vec<(String, String)> = dashboard_exprs().into_iter().chain(alert_exprs()).collect();
    for (origin, expr) in &exprs {
        for selector in selectors(expr) {
            if prometheus_internal(&selector.name) {
                continue;
            }
            let family = families.get(&selector.name).map(|f| (selector.name.clone(), f)).or_else(|| {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let base = selector.name.strip_suffix(suffix)?;
                    families
                        .get(base)
                        .filter(|f| f.kind == "histogram" || f.kind == "summary")
                        .map(|f| (base.to_string(), f))
                })
            });
            let Some((base, family)) = family else {
                problems.push(format!("{origin}: {} is exported by no service", selector.name));
                continue;
            };
            for label in &selector.labels {
                if !family.labels.contains(label) && !target_labels.contains(&label.as_str()) {
                    problems
                        .push(format!("{origin}: {} has no label {label} (it has {:?})", selector.name, family.labels));
                }
            }
            used.entry(base).or_default().extend(family.services.iter().cloned());
        }
    }
    assert!(problems.is_empty(), "metrics named but not exported:\n{}", problems.join("\n"));
    // What the dashboards and alerts are about, and who exports it.
    for (name, services) in &used {
        eprintln!("{name}: {}", services.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "acgs_constitutional_compliance_score",
        "acgs_constitution_version",
        "acgs_policy_set_version",
        "acgs_amendments_closed_total",
        "acgs_proposals_closed_total",
        "acgs_decisions_total",
        "acgs_log_entries",
    ] {
        assert!(used.contains_key(name), "nothing shows {name}");
    }
    // Every service's HTTP metrics carry the `service` label the scrape config gives it.
    for service in ServiceName::ALL {
        assert!(families["http_requests_total"].services.contains(service.as_str()), "{service}");
    }
    assert!(families["http_requests_total"].labels.contains("service"));
}

// ---------------------------------------------------------------------------------------------
// Compose and the image defaults

/// The variable name at the start of `s` (letters, digits, `_`).
fn var_name(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// Compose's interpolation of `$$`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?message}` and `${VAR?message}` (the forms compose.yaml may use); a bare `$VAR` is
/// refused here so every variable is visibly delimited.
fn interpolate(text: &str, vars: &HashMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            return Err(format!("bare ${} (write ${{VAR}})", var_name(after)));
        };
        let end = body.find('}').ok_or("unterminated ${")?;
        let (inner, tail) = (&body[..end], &body[end + 1..]);
        let name = var_name(inner);
        let op = &inner[name.len()..];
        let value = vars.get(name).filter(|v| !v.is_empty());
        let set = vars.contains_key(name);
        let replaced = if let Some(default) = op.strip_prefix(":-") {
            value.cloned().unwrap_or_else(|| default.to_string())
        } else if let Some(default) = op.strip_prefix('-') {
            if set { vars[name].clone() } else { default.to_string() }
        } else if let Some(message) = op.strip_prefix(":?") {
            value.cloned().ok_or_else(|| format!("required variable {name} is missing a value: {message}"))?
        } else if let Some(message) = op.strip_prefix('?') {
            if set { vars[name].clone() } else { return Err(format!("required variable {name}: {message}")) }
        } else if op.is_empty() {
            value.cloned().unwrap_or_default()
        } else {
            return Err(format!("unsupported interpolation ${{{inner}}}"));
        };
        out.push_str(&replaced);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The `.env` of a test stack: a distinct value per secret.
fn dot_env() -> HashMap<&'static str, String> {
    SECRETS.iter().map(|s| (*s, format!("{}0secret", s.to_ascii_lowercase().replace('_', "")))).collect()
}

fn images() -> BTreeMap<String, String> {
    let table: toml::Table = shipped("deploy/images.toml").parse().expect("images.toml is TOML");
    table.into_iter().map(|(k, v)| (k, v.as_str().expect("an image reference").to_string())).collect()
}

#[test]
fn image_defaults_are_pinned_in_one_place_and_compose_uses_them() {
    let images = images();
    assert_eq!(
        images.keys().map(String::as_str).collect::<Vec<_>>(),
        ["dind", "grafana", "nats", "postgres", "prometheus", "redis"]
    );
    for (key, image) in &images {
        let (_, tag) = image.rsplit_once(':').unwrap_or_else(|| panic!("{key}: {image} has no tag"));
        assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{key}: {image} is not pinned");
    }
    let raw = shipped(COMPOSE);
    assert!(!raw.contains(":latest"), "compose.yaml names a latest tag");
    // With nothing set, compose uses images.toml's tags.
    let compose = yaml(&interpolate(raw, &dot_env()).expect("interpolates"), "compose.yaml");
    for (service, key) in [
        ("postgres", "postgres"),
        ("redis", "redis"),
        ("nats", "nats"),
        ("prometheus", "prometheus"),
        ("grafana", "grafana"),
    ] {
        assert_eq!(compose["services"][service]["image"].as_str(), Some(images[key].as_str()), "{service}");
        assert!(raw.contains(&format!("${{{}_IMAGE:-{}}}", key.to_ascii_uppercase(), images[key])), "{service}");
    }
    for service in ServiceName::ALL {
        assert_eq!(compose["services"][service.as_str()]["image"].as_str(), Some("acgs:local"));
    }
    // An override wins.
    let mut vars = dot_env();
    vars.insert("ACGS_IMAGE", "registry.example/acgs:1.2.3".into());
    let compose = yaml(&interpolate(raw, &vars).expect("interpolates"), "compose.yaml");
    assert_eq!(compose["services"]["auth"]["image"].as_str(), Some("registry.example/acgs:1.2.3"));
}

#[test]
fn compose_refuses_to_start_without_each_secret() {
    let raw = shipped(COMPOSE);
    // Every reference to a secret is `${SECRET:?…}`, and every secret is used.
    let mut rest = raw;
    let mut used = BTreeSet::new();
    while let Some(at) = rest.find("${") {
        let name = var_name(&rest[at + 2..]);
        if SECRETS.contains(&name) {
            assert!(rest[at + 2 + name.len()..].starts_with(":?"), "${{{name}…}} is not required with :?");
            used.insert(name);
        }
        rest = &rest[at + 2..];
    }
    assert_eq!(used, SECRETS.into_iter().collect());
    interpolate(raw, &dot_env()).expect("a complete .env is enough");
    for secret in SECRETS {
        let mut vars = dot_env();
        vars.remove(secret);
        let error = interpolate(raw, &vars).expect_err(secret);
        assert!(error.contains(secret), "{error}");
        vars.insert(secret, String::new());
        assert!(interpolate(raw, &vars).is_err(), "{secret} empty");
    }
}

/// The compose file as compose would see it with the test `.env`.
fn compose() -> Yaml {
    yaml(&interpolate(shipped(COMPOSE), &dot_env()).expect("interpolates"), "compose.yaml")
}

#[test]
fn compose_runs_every_service_hardened_and_publishes_only_on_localhost() {
    let compose = compose();
    let services = &compose["services"];
    let mut expected: BTreeSet<String> = ServiceName::ALL.iter().map(|s| s.as_str().to_string()).collect();
    expected.extend(["postgres", "redis", "nats", "prometheus", "grafana"].map(String::from));
    assert_eq!(keys(services), expected);
    let names = keys(services);
    let volumes = keys(&compose["volumes"]);
    assert_eq!(keys(&compose["networks"]), BTreeSet::from(["acgs".to_string()]));

    for (name, service) in services.as_hash().expect("services") {
        let name = name.as_str().expect("name");
        assert_eq!(strings(&service["networks"]), ["acgs"], "{name}: one network, where it is found by name");
        assert_eq!(service["restart"].as_str(), Some("unless-stopped"), "{name}");
        assert!(strings(&service["security_opt"]).contains(&"no-new-privileges:true".to_string()), "{name}");
        assert!(!service["healthcheck"]["test"].is_badvalue(), "{name}: no health check");
        for port in service["ports"].as_vec().map(|_| strings(&service["ports"])).unwrap_or_default() {
            assert!(port.starts_with("127.0.0.1:"), "{name}: {port} is published beyond 127.0.0.1");
        }
        if let Some(deps) = service["depends_on"].as_hash() {
            for (dep, how) in deps {
                let dep = dep.as_str().expect("name");
                assert!(names.contains(dep), "{name} depends on unknown {dep}");
                assert_eq!(how["condition"].as_str(), Some("service_healthy"), "{name} on {dep}");
            }
        }
        for mount in service["volumes"].as_vec().map(|_| strings(&service["volumes"])).unwrap_or_default() {
            let source = mount.split(':').next().expect("source");
            if let Some(relative) = source.strip_prefix("../") {
                assert!(
                    EMBEDDED.get_file(relative).is_some() || EMBEDDED.get_dir(relative).is_some(),
                    "{name}: {source} is not in the exported tree"
                );
            } else {
                assert!(volumes.contains(source), "{name}: volume {source} is not declared");
            }
        }
    }
    for infra in ["postgres", "redis", "nats"] {
        assert!(services[infra]["ports"].is_badvalue(), "{infra} is published");
    }
    // Redis and NATS get their passwords through the environment into a configuration file that
    // the command writes: never on a command line, where `ps` on the host shows them.
    for (infra, var, secret, conf) in [
        ("redis", "REDIS_PASSWORD", "redispassword0secret", "redis-server /tmp/redis.conf"),
        ("nats", "NATS_PASSWORD", "natspassword0secret", "nats-server --config /tmp/nats.conf"),
    ] {
        let service = &services[infra];
        assert_eq!(service["environment"][var].as_str(), Some(secret), "{infra}: {var} in its environment");
        let argv = [strings(&service["entrypoint"]), strings(&service["command"])].concat();
        assert!(argv.iter().all(|a| !a.contains(secret)), "{infra}: the password on a command line: {argv:?}");
        let script = argv.last().expect("the start script");
        assert!(script.contains(&format!("\"${var}\"")) && script.contains(conf), "{infra}: {script}");
    }

    for service in ServiceName::ALL {
        let s = &services[service.as_str()];
        let port = service.default_port();
        let name = service.as_str();
        assert_eq!(strings(&s["command"]), ["serve", name, "--port", &port.to_string(), "--bind", "0.0.0.0"]);
        assert_eq!(strings(&s["ports"]), [format!("127.0.0.1:{port}:{port}")]);
        assert_eq!(s["user"].as_str(), Some("10001:10001"), "{name}");
        assert_eq!(s["read_only"].as_bool(), Some(true), "{name}");
        assert_eq!(strings(&s["cap_drop"]), ["ALL"], "{name}");
        assert!(strings(&s["tmpfs"]).iter().any(|t| t == "/tmp" || t.starts_with("/tmp:")), "{name}: tmpfs /tmp");
        for limit in ["mem_limit", "cpus", "pids_limit"] {
            assert!(scalar(&s[limit]).is_some(), "{name}: no {limit}");
        }
        assert_eq!(strings(&s["healthcheck"]["test"]), ["CMD", "/acgs", "healthcheck"], "{name}");
        assert!(strings(&s["volumes"]).iter().any(|v| v.ends_with(":/data")), "{name}: a volume on /data");
        let deps = keys(&s["depends_on"]);
        for infra in ["postgres", "redis", "nats"] {
            assert!(deps.contains(infra), "{name} does not wait for {infra}");
        }
    }

    let prometheus = strings(&services["prometheus"]["volumes"]);
    for mount in [
        "../monitoring/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "../monitoring/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro",
    ] {
        assert!(prometheus.contains(&mount.to_string()), "prometheus: {mount}");
    }
    assert!(
        strings(&services["prometheus"]["command"]).contains(&"--config.file=/etc/prometheus/prometheus.yml".into())
    );
    let grafana = &services["grafana"];
    let mounts = strings(&grafana["volumes"]);
    for mount in [
        "../monitoring/grafana/provisioning:/etc/grafana/provisioning:ro",
        "../monitoring/grafana/dashboards:/etc/grafana/dashboards:ro",
    ] {
        assert!(mounts.contains(&mount.to_string()), "grafana: {mount}");
    }
    assert_eq!(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].as_str(), Some("grafanaadminpassword0secret"));
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str().expect("home dashboard");
    let file = home.strip_prefix("/etc/grafana/dashboards/").expect("in the dashboards folder");
    assert!(dashboards().contains_key(file), "{home}");
    assert_eq!(services["postgres"]["environment"]["POSTGRES_PASSWORD"].as_str(), Some("postgrespassword0secret"));
}

/// A configuration loaded from `env` alone (no file, no flags), as `acgs serve` would.
fn load(env: &HashMap<String, String>) -> Config {
    let empty = tempfile::NamedTempFile::new().expect("empty config file");
    let get = |name: &str| env.get(name).cloned();
    Config::load(Sources { file: Some(empty.path()), env: &get, flags: Vec::new() })
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

/// The env name `acgs healthcheck` reads its URL from.
fn healthcheck_url_env() -> String {
    use clap::CommandFactory;
    let cli = acgs::cli::Cli::command();
    let healthcheck = cli.find_subcommand("healthcheck").expect("healthcheck");
    let url = healthcheck.get_arguments().find(|a| a.get_id() == "url").expect("url argument");
    url.get_env().expect("an env twin").to_string_lossy().into_owned()
}

#[test]
fn every_acgs_container_gets_an_environment_acgs_really_reads() {
    let compose = compose();
    let vars = dot_env();
    let healthcheck_env = healthcheck_url_env();
    let defaults = serde_json::to_value(load(&HashMap::new())).expect("json");
    for service in ServiceName::ALL {
        let name = service.as_str();
        let env: HashMap<String, String> = compose["services"][name]["environment"]
            .as_hash()
            .unwrap_or_else(|| panic!("{name}: environment as a mapping"))
            .iter()
            .map(|(k, v)| (k.as_str().expect("name").to_string(), scalar(v).expect("a value")))
            .collect();
        // Every variable is a configuration key (it changes what is loaded) or the health check's.
        for (key, value) in &env {
            if *key == healthcheck_env {
                assert_eq!(value, &format!("http://127.0.0.1:{}/ready", service.default_port()), "{name}");
                continue;
            }
            let alone = HashMap::from([(key.clone(), value.clone())]);
            let loaded = serde_json::to_value(load(&alone)).expect("json");
            assert!(loaded != defaults, "{name}: {key} is not read by acgs's configuration");
        }
        let config = load(&env);
        assert_eq!(config.data_dir, PathBuf::from("/data"), "{name}");
        assert_eq!(config.database_url, format!("postgres://acgs:{}@postgres:5432/acgs", vars["POSTGRES_PASSWORD"]));
        assert_eq!(config.nats_url, format!("nats://acgs:{}@nats:4222", vars["NATS_PASSWORD"]));
        assert_eq!(config.redis_url, format!("redis://:{}@redis:6379/0", vars["REDIS_PASSWORD"]));
        assert_eq!(config.service_client_secret, vars["ACGS_SERVICE_CLIENT_SECRET"]);
        for peer in ServiceName::ALL {
            let url = format!("http://{peer}:{}", peer.default_port());
            assert_eq!(config.peer_url(peer), Some(url.as_str()), "{name}: {peer}");
        }
        let admin = if service == ServiceName::Auth { vars["ACGS_ADMIN_PASSWORD"].clone() } else { String::new() };
        assert_eq!(config.admin_password, admin, "{name}: only auth creates the admin");
        assert!(env.contains_key(&healthcheck_env), "{name}: no {healthcheck_env}");
    }
}
