//! Prometheus metrics: one registry per service, with the guide's HTTP metric names.
//!
//! In `acgs up` seven services share a process; each still has its own registry, so each
//! `/metrics` shows that service's series only (plus the shared process metrics), exactly as if it
//! ran alone. That keeps scrape configs identical between one-process and distributed deployments.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// A service's registry and the HTTP metrics every service has.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    service: &'static str,
    http_requests_total: IntCounterVec,
    http_request_duration_seconds: HistogramVec,
}

impl Metrics {
    pub fn new(service: &'static str) -> Self {
        let registry = Registry::new();
        let labels = ["service", "route", "method", "status"];
        let http_requests_total =
            IntCounterVec::new(Opts::new("http_requests_total", "HTTP requests served, by route and status"), &labels)
                .expect("static metric definition is valid");
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time from request received to response produced")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &labels,
        )
        .expect("static metric definition is valid");
        // Registration of fresh metrics in a fresh registry cannot collide.
        let _ = registry.register(Box::new(http_requests_total.clone()));
        let _ = registry.register(Box::new(http_request_duration_seconds.clone()));
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        Metrics { registry, service, http_requests_total, http_request_duration_seconds }
    }

    /// Registers a service-specific collector (a counter, gauge, …).
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(&self, collector: &C) {
        if let Err(e) = self.registry.register(Box::new(collector.clone())) {
            tracing::warn!(service = self.service, error = %e, "metric registered twice");
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records one served request. The route label is the matched route template
    /// (`/api/v1/users/{id}`), never the raw path, so label cardinality stays bounded.
    pub fn record(&self, route: &str, method: &str, status: StatusCode, elapsed: Duration) {
        let labels = [self.service, route, method, status.as_str()];
        self.http_requests_total.with_label_values(&labels).inc();
        self.http_request_duration_seconds.with_label_values(&labels).observe(elapsed.as_secs_f64());
    }
}
