//! What `/metrics` shows. The agent's own metrics (scheduler, store, notifiers, rollups)
//! live on its own registry (no global registry, so tests can run many agents in one
//! process); the per-check series, which are nearly all of a scrape, live in a
//! [`CheckTable`] of compact cells written out at scrape time.

mod checks;

pub use checks::{Cell, Cells, CheckTable};

use std::ops::ControlFlow;
use std::sync::Arc;

use prometheus::core::Collector;

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::probe::Kind;

/// Buckets for round-trip and probe times on WAN links: 0.5 ms on a LAN to 10 s on a
/// congested or satellite link.
pub const WAN_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];

/// The agent's own health: lives as long as the process.
pub struct AgentMetrics {
    pub lateness: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub checks: IntGaugeVec,
    pub reload_successful: IntGauge,
    pub reload_success_timestamp: Gauge,
    pub reloads: IntCounterVec,
    /// Per config file: whether its version on disk is the one in force.
    pub file_reload_successful: IntGaugeVec,
    pub icmp_socket: IntGaugeVec,
}

impl AgentMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<AgentMetrics> {
        let build_info = IntGaugeVec::new(
            Opts::new(
                "iocwatch_build_info",
                "Build of the running agent; always 1.",
            ),
            &["version", "revision", "rustversion"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("IOCWATCH_REVISION").unwrap_or("unknown"),
                option_env!("IOCWATCH_RUSTC_VERSION").unwrap_or("unknown"),
            ])
            .set(1);
        registry.register(Box::new(build_info))?;
        let metrics = AgentMetrics {
            lateness: HistogramVec::new(
                HistogramOpts::new(
                    "iocwatch_scheduler_lateness_seconds",
                    "How late probes started against their schedule (waiting for a concurrency slot included).",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
                &["kind"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new("iocwatch_probes_in_flight", "Probes running now."),
                &["kind"],
            )?,
            checks: IntGaugeVec::new(
                Opts::new("iocwatch_checks_configured", "Checks in the running config."),
                &["kind"],
            )?,
            reload_successful: IntGauge::new(
                "iocwatch_config_last_reload_successful",
                "Whether the last config load succeeded (1) or was refused (0).",
            )?,
            reload_success_timestamp: Gauge::new(
                "iocwatch_config_last_reload_success_timestamp_seconds",
                "Time of the last successful config load.",
            )?,
            reloads: IntCounterVec::new(
                Opts::new("iocwatch_config_reloads_total", "Config reloads by result."),
                &["result"],
            )?,
            file_reload_successful: IntGaugeVec::new(
                Opts::new(
                    "iocwatch_config_file_last_reload_successful",
                    "Per config file: whether its last version was accepted (1), or refused alone while the other files applied (0).",
                ),
                &["file"],
            )?,
            icmp_socket: IntGaugeVec::new(
                Opts::new(
                    "iocwatch_icmp_socket_info",
                    "How ICMP sockets were opened: raw, datagram (unprivileged) or unavailable.",
                ),
                &["family", "mode"],
            )?,
        };
        for kind in Kind::ALL {
            metrics.in_flight.with_label_values(&[kind.as_str()]).set(0);
        }
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]).inc_by(0);
        }
        let collectors: [Box<dyn Collector>; 8] = [
            Box::new(metrics.file_reload_successful.clone()),
            Box::new(metrics.lateness.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.checks.clone()),
            Box::new(metrics.reload_successful.clone()),
            Box::new(metrics.reload_success_timestamp.clone()),
            Box::new(metrics.reloads.clone()),
            Box::new(metrics.icmp_socket.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        // Memory, descriptors and CPU of the process, as every exporter reports them.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            registry.register(Box::new(RuntimeCollector::new(runtime)?))?;
        }
        Ok(metrics)
    }
}

/// Tasks alive in the runtime, read at scrape time: one per check plus a fixed few, so a
/// count that grows across reloads is a leak.
struct RuntimeCollector {
    runtime: tokio::runtime::Handle,
    tasks: IntGauge,
}

impl RuntimeCollector {
    fn new(runtime: tokio::runtime::Handle) -> prometheus::Result<RuntimeCollector> {
        Ok(RuntimeCollector {
            runtime,
            tasks: IntGauge::new(
                "iocwatch_runtime_tasks",
                "Tasks alive in the agent's runtime.",
            )?,
        })
    }
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.tasks.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let alive = self.runtime.metrics().num_alive_tasks();
        self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
        self.tasks.collect()
    }
}

/// Rollups per area and per system: how many targets are in each state.
pub struct RollupMetrics {
    pub area_targets: IntGaugeVec,
    pub area_info: IntGaugeVec,
    pub system_targets: IntGaugeVec,
    pub system_info: IntGaugeVec,
}

impl RollupMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<RollupMetrics> {
        let m = RollupMetrics {
            area_targets: IntGaugeVec::new(
                Opts::new(
                    "iocwatch_area_targets",
                    "Targets in the area and all areas below it, by state (up, degraded, down, unknown).",
                ),
                &["area", "state"],
            )?,
            area_info: IntGaugeVec::new(
                Opts::new("iocwatch_area_info", "One series per area: its name, parent, kind, level, path and position; always 1."),
                &["area", "parent", "name", "kind", "level", "area_path", "lat", "lon"],
            )?,
            system_targets: IntGaugeVec::new(
                Opts::new("iocwatch_system_targets", "Endpoints of a shared system by state."),
                &["system", "state"],
            )?,
            system_info: IntGaugeVec::new(
                Opts::new("iocwatch_system_info", "One series per shared system; always 1."),
                &["system", "name", "owner"],
            )?,
        };
        registry.register(Box::new(m.area_targets.clone()))?;
        registry.register(Box::new(m.area_info.clone()))?;
        registry.register(Box::new(m.system_targets.clone()))?;
        registry.register(Box::new(m.system_info.clone()))?;
        Ok(m)
    }
}

/// Everything `/metrics` shows: the registry and the check table, with the agent's constant
/// labels (`vantage`) on every series of both.
#[derive(Clone)]
pub struct Exposition {
    registry: Registry,
    checks: Arc<CheckTable>,
}

impl Exposition {
    /// `vantage` names where the agent measures from (a commune's box, the IOC); every
    /// series carries it, so one Prometheus tells vantages apart.
    pub fn new(vantage: Option<&str>) -> prometheus::Result<Exposition> {
        let constant: Vec<(String, String)> = vantage
            .filter(|v| !v.is_empty())
            .map(|v| ("vantage".to_owned(), v.to_owned()))
            .into_iter()
            .collect();
        let registry = Registry::new_custom(None, Some(constant.iter().cloned().collect()))?;
        Ok(Exposition {
            registry,
            checks: Arc::new(CheckTable::new(constant)),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn checks(&self) -> &Arc<CheckTable> {
        &self.checks
    }

    /// Writes the whole exposition in the text format, about `chunk` bytes at a time;
    /// `emit` breaks to stop early.
    pub fn write(&self, chunk: usize, mut emit: impl FnMut(String) -> ControlFlow<()>) {
        let families = self.registry.gather();
        let own = prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"));
        if emit(own).is_continue() {
            self.checks.render(chunk, emit);
        }
    }

    /// The whole exposition as one text (tests, benches).
    pub fn render(&self) -> String {
        let mut text = String::new();
        self.write(1 << 20, |chunk| {
            text.push_str(&chunk);
            ControlFlow::Continue(())
        });
        text
    }
}

#[cfg(test)]
mod tests {
    use super::{AgentMetrics, Exposition};

    #[test]
    fn the_vantage_is_on_every_series_of_the_agent() {
        let exposition = Exposition::new(Some("xa-02947")).expect("exposition");
        AgentMetrics::register(exposition.registry()).expect("register");
        let text = exposition.render();
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(!series.is_empty());
        assert!(
            series.iter().all(|l| l.contains("vantage=\"xa-02947\"")),
            "{text}"
        );
        // Without one, no empty label.
        let plain = Exposition::new(None).expect("exposition");
        AgentMetrics::register(plain.registry()).expect("register");
        assert!(!plain.render().contains("vantage"));
    }
}
