//! `[[upstreams]]`: protocol, TLS, timeouts, targets and the balancer with its policies.

use std::collections::HashMap;
use std::sync::Arc;

use orchestra_lb::Target;

use super::Compiler;
use crate::parse::{join, typed};
use crate::schema::RawUpstream;
use crate::snapshot::*;
use crate::ErrorKind;

pub(super) fn upstreams(
    c: &mut Compiler<'_>,
    raw: Vec<toml::Value>,
    previous: Option<&Snapshot>,
) -> (Vec<Arc<Upstream>>, HashMap<String, usize>) {
    let mut out = Vec::new();
    let mut index = HashMap::new();
    for (i, value) in raw.into_iter().enumerate() {
        let path = format!("upstreams[{i}]");
        let definition = value.clone();
        let Some(u) = typed::<RawUpstream>(value, &path, c.file, c.errors) else {
            continue;
        };
        // An unchanged definition keeps its balancer, target statistics, health and ejection
        // state (pingora's connection pools are keyed by peer, so they carry over by themselves).
        let reused = previous
            .and_then(|p| p.upstreams.iter().find(|old| *old.name == *u.name))
            .filter(|old| old.definition == definition)
            .cloned();
        let built = match reused {
            Some(old) => Some(old),
            None => upstream(c, &path, u, definition).map(Arc::new),
        };
        if let Some(u) = built {
            if index.contains_key(&*u.name) {
                c.err(
                    join(&path, "name"),
                    ErrorKind::Duplicate {
                        what: "upstream",
                        name: u.name.to_string(),
                    },
                );
                continue;
            }
            index.insert(u.name.to_string(), out.len());
            out.push(u);
        }
    }
    (out, index)
}

fn upstream(
    c: &mut Compiler<'_>,
    path: &str,
    u: RawUpstream,
    definition: toml::Value,
) -> Option<Upstream> {
    if u.name.is_empty() {
        c.invalid(join(path, "name"), "", "must not be empty");
    }
    let policy = crate::upstream_policy::policy(c, path, &u);
    let protocol = match u.protocol.as_deref() {
        None | Some("h1") => UpstreamProtocol::H1,
        Some("h2") => UpstreamProtocol::H2,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(p) => {
            c.invalid(join(path, "protocol"), p, "expected h1, h2 or h2c");
            UpstreamProtocol::H1
        }
    };
    if protocol == UpstreamProtocol::H2 && !u.tls {
        c.invalid(
            join(path, "protocol"),
            "h2",
            "h2 needs tls = true (use h2c for cleartext)",
        );
    }
    if protocol == UpstreamProtocol::H2c && u.tls {
        c.invalid(
            join(path, "protocol"),
            "h2c",
            "h2c is cleartext; use h2 with tls = true",
        );
    }
    if !u.tls && (u.sni.is_some() || u.verify.is_some()) {
        c.invalid(join(path, "tls"), "false", "sni and verify need tls = true");
    }
    let tls = u.tls.then(|| UpstreamTls {
        sni: u.sni.clone().unwrap_or_default(),
        verify: u.verify.unwrap_or(true),
    });
    let d = Timeouts::default();
    let tp = join(path, "timeouts");
    let timeouts = Timeouts {
        connect: c.positive_duration(
            &join(&tp, "connect"),
            u.timeouts.connect.as_deref(),
            d.connect,
        ),
        read: c.positive_duration(&join(&tp, "read"), u.timeouts.read.as_deref(), d.read),
        write: c.positive_duration(&join(&tp, "write"), u.timeouts.write.as_deref(), d.write),
        idle: c.positive_duration(&join(&tp, "idle"), u.timeouts.idle.as_deref(), d.idle),
    };
    if u.targets.is_empty() {
        c.invalid(join(path, "targets"), "[]", "must not be empty");
    }
    let mut targets = Vec::new();
    for (j, t) in u.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{j}]");
        let weight = match t.weight {
            None => 1,
            Some(w) if (1..=i64::from(u32::MAX)).contains(&w) => w as u32,
            Some(w) => {
                c.invalid(join(&tpath, "weight"), &w.to_string(), "must be at least 1");
                1
            }
        };
        if let Some(addr) = c.target_addr(&join(&tpath, "addr"), &t.addr) {
            targets.push(Target::new(addr, weight));
        }
    }
    Some(Upstream {
        name: u.name.into(),
        protocol,
        tls,
        timeouts,
        balancer: orchestra_lb::build(policy.strategy, targets, &policy.params),
        policy,
        definition,
    })
}
