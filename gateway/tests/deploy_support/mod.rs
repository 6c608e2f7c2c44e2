//! Readers of the deployment artifacts for `deploy_artifacts.rs`: repository files, the
//! Kubernetes manifests as YAML, the shipped config compiled, and the metric selectors of PromQL
//! and Grafana queries.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// `path` relative to the repository root.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The shipped `config/gateway.toml`, compiled. Its development secret
/// (`config/dev-jwt.secret`, created by `./scripts/setup` and relative to the repository root)
/// is replaced by one the test writes, so the check depends on neither the working directory nor
/// a previous setup run.
pub fn shipped_config() -> orchestra_config::Snapshot {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("dev-jwt.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").expect("write secret");
    let text = read("config/gateway.toml");
    assert!(
        text.contains("\"config/dev-jwt.secret\""),
        "the shipped config names config/dev-jwt.secret"
    );
    let text = text.replace(
        "\"config/dev-jwt.secret\"",
        &format!("{:?}", secret.display().to_string()),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    orchestra_config::load(&path).expect("shipped config")
}

/// The text of repository file `path`.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of every `*.yaml` under `deploy/kubernetes`, with its file name.
pub fn manifests() -> Vec<(String, Yaml)> {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&f).expect("read manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name.clone(), v));
        }
    }
    out
}

/// The value at dotted `path` (`spec.template.0.name`; numbers index sequences).
pub fn s<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

/// The string at dotted `path`; panics when it is not one.
pub fn text<'a>(v: &'a Yaml, path: &str) -> &'a str {
    s(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {v:?}"))
}

/// The manifests of `kind`.
pub fn objects<'a>(all: &'a [(String, Yaml)], kind: &str) -> Vec<&'a Yaml> {
    all.iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// True when the non-empty `selector` matches `labels`.
pub fn labels_match(selector: &Yaml, labels: &Yaml) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels[k] == *v))
}

/// `orchestra_*` metric names and the label keys used with them in a PromQL expression.
pub fn promql_selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("orchestra_") {
        let start = i + off;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let name = expr[start..end].to_string();
        let mut labels = Vec::new();
        if b.get(end) == Some(&b'{') {
            let close = expr[end..]
                .find('}')
                .map(|c| end + c)
                .expect("closing brace");
            for m in expr[end + 1..close].split(',') {
                let key: String = m
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() {
                    labels.push(key);
                }
            }
            end = close;
        }
        out.push((name, labels));
        i = end;
    }
    out
}

/// Every query expression of a Grafana dashboard (`expr`, `query`, `definition`).
pub fn grafana_exprs(dashboard: &Json) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(m) => {
                for (k, x) in m {
                    if (k == "expr" || k == "query" || k == "definition") && x.is_string() {
                        out.push(x.as_str().unwrap_or_default().to_string());
                    } else {
                        walk(x, out);
                    }
                }
            }
            Json::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(dashboard, &mut out);
    out
}

/// `deploy/prometheus/rules.yml`, parsed.
pub fn rules_yaml() -> Yaml {
    serde_yaml::from_str(&read("deploy/prometheus/rules.yml")).expect("rules.yml is YAML")
}
