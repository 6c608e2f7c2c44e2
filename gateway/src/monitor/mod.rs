//! The monitor: one control-plane task that, every `monitor.interval`, samples the gateway for
//! the dashboard ([`timeseries`]) and evaluates the alert rules ([`crate::alerts`]).
//!
//! It reads only what the data plane already maintains (the latency registry, status counters,
//! balancer state, [`GatewayState::agents_online`]); it runs on the main thread's current-thread
//! runtime with the admin API, so the two locks of [`MonitorState`] are never contended by
//! request threads, and never held across an `.await`.

pub mod timeseries;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::alerts::readings::LiveReadings;
use crate::alerts::webhook::Notifier;
use crate::alerts::{AlertEngine, Notification};
use crate::state::{GatewayState, Live};
use timeseries::TimeSeries;

/// What the monitor task maintains and the admin API shows.
#[derive(Debug, Default)]
pub struct MonitorState {
    timeseries: Mutex<TimeSeries>,
    alerts: Mutex<AlertEngine>,
}

impl MonitorState {
    /// The dashboard's time series.
    pub fn timeseries(&self) -> MutexGuard<'_, TimeSeries> {
        self.timeseries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The alert rules and their states.
    pub fn alerts(&self) -> MutexGuard<'_, AlertEngine> {
        self.alerts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One monitor step at `now`: rotate the registry, sample the time series, follow the running
/// rules and evaluate them. Returns the alert state changes.
pub fn tick(
    state: &GatewayState,
    live: &Live,
    now: Instant,
    wall: SystemTime,
) -> Vec<Notification> {
    state.registry.rotate(now);
    state.monitor.timeseries().sample(state, live, now, wall);
    let mut engine = state.monitor.alerts();
    let mut out = engine.sync(&live.snapshot.alerts, live.version, wall);
    let readings = LiveReadings { state, live, now };
    out.extend(engine.evaluate(&readings, now, wall));
    out
}

/// Runs the monitor until the process exits (spawned on the control-plane runtime).
pub async fn run(state: Arc<GatewayState>) {
    let mut notifier = match Notifier::new() {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::error!(error = %e, "alert webhooks disabled");
            None
        }
    };
    let mut next = tokio::time::Instant::now();
    loop {
        let live = state.live();
        let settings = live.snapshot.monitor.clone();
        let notifications = tick(&state, &live, Instant::now(), SystemTime::now());
        drop(live);
        for n in notifications {
            match notifier.as_mut() {
                Some(notifier) => notifier.notify(n, &settings),
                None => crate::alerts::webhook::log_change(&n),
            }
        }
        next += settings.interval;
        let now = tokio::time::Instant::now();
        if next < now {
            // Late (a slow tick or a shorter interval after a reload): don't try to catch up.
            next = now + settings.interval;
        }
        tokio::time::sleep_until(next).await;
    }
}
