//! Active health checks of the running config's upstreams, on the control-plane runtime.
//!
//! One checker per upstream that configures `health_check`. After every config swap the set is
//! re-synchronized: an upstream carried over unchanged (same `Arc`) keeps its checker and its
//! targets' health; a new or changed one gets a fresh checker; checkers of removed upstreams stop
//! (dropping a [`HealthChecker`] aborts its task).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orchestra_config::Upstream;
use orchestra_lb::HealthChecker;

use crate::state::GatewayState;

/// Keeps the checkers in step with the running config until the process exits.
pub async fn run(state: Arc<GatewayState>) {
    let mut checkers: HashMap<usize, (Arc<Upstream>, HealthChecker)> = HashMap::new();
    let mut version = 0;
    loop {
        let live = state.live();
        if live.version != version {
            version = live.version;
            sync(&live.snapshot.upstreams, &mut checkers);
        }
        drop(live);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sync(
    upstreams: &[Arc<Upstream>],
    checkers: &mut HashMap<usize, (Arc<Upstream>, HealthChecker)>,
) {
    let key = |u: &Arc<Upstream>| Arc::as_ptr(u) as usize;
    checkers.retain(|k, _| upstreams.iter().any(|u| key(u) == *k));
    for u in upstreams {
        let Some(cfg) = &u.policy.health else {
            continue;
        };
        if checkers.contains_key(&key(u)) {
            continue;
        }
        match orchestra_lb::health::spawn(u.balancer.targets().to_vec(), cfg.clone()) {
            Ok(h) => {
                tracing::info!(upstream = %u.name, "health checks started");
                checkers.insert(key(u), (Arc::clone(u), h));
            }
            Err(e) => tracing::error!(upstream = %u.name, error = %e, "health checks not started"),
        }
    }
}
