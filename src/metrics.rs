//! Every metric vestibule exports, registered once per process in the context's registry.
//!
//! Families are created here, not by modules, because modules are provisioned again on every reload
//! and a registry refuses a second registration. Label values are bounded: vhost and upstream names
//! from the configuration, status classes, results; never paths or anything a client sends.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_active: IntGauge,
    pub http_refused: IntCounterVec,
    pub http_connections: IntGauge,
    pub accept_errors: IntCounterVec,
    pub websockets_active: IntGauge,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_failures: IntCounterVec,
    pub reloads: IntCounterVec,
    pub reload_success_time: IntGauge,
    pub tls_handshakes: IntCounterVec,
    pub cert_expiry: IntGaugeVec,
    pub cert_reloads: IntCounterVec,
    pub remote_online: IntGaugeVec,
    pub onlyoffice_relayed: IntCounterVec,
    pub acme_orders: IntCounterVec,
    pub mail_received: IntCounter,
    pub mail_rejected: IntCounterVec,
    pub mail_delivered: IntCounter,
    pub mail_deferred: IntCounter,
    pub mail_bounced: IntCounter,
    pub mail_queue_size: IntGauge,
    pub mail_oldest_age: IntGauge,
    pub mail_delivery_duration: Histogram,
    pub acme_last_success: IntGaugeVec,
    pub push_notifications: IntCounterVec,
    pub push_removals: IntCounterVec,
    pub push_destination_duration: HistogramVec,
    pub push_bad_requests: IntCounter,
    pub push_rate_limited: IntCounter,
    pub push_forbidden: IntCounter,
    pub push_acks: IntCounterVec,
    pub onlyoffice_rejected: IntCounterVec,
    pub remote_last_ping: IntGaugeVec,
    pub access_log_dropped: IntCounter,
}

/// Status class label values, indexed by `status / 100` (0 = no response: the client went away).
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per-vhost handles resolved once at provision, so the request path touches no label map.
#[derive(Clone)]
pub struct VhostMetrics {
    pub by_class: [IntCounter; 6],
    pub duration: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "vestibule_http_requests_total",
                    "HTTP requests handled, by vhost and status class",
                ),
                &["vhost", "class"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "vestibule_http_request_duration_seconds",
                    "Time from request start to the last response byte, by vhost",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["vhost"],
            )
            .expect("valid metric"),
            http_refused: IntCounterVec::new(
                Opts::new(
                    "vestibule_http_refused_total",
                    "Client connections closed by a proxy limit: max_connections, max_connections_per_ip, tls_handshake_timeout, header_timeout, header_too_large",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            http_connections: IntGauge::new(
                "vestibule_http_connections_active",
                "Open client connections on the proxy listeners",
            )
            .expect("valid metric"),
            accept_errors: IntCounterVec::new(
                Opts::new(
                    "vestibule_accept_errors_total",
                    "Accepts that failed for lack of descriptors or memory, by listener (HTTP, HTTPS, admin, SMTP, push)",
                ),
                &["listener"],
            )
            .expect("valid metric"),
            http_active: IntGauge::new(
                "vestibule_http_requests_active",
                "Requests in progress, open websocket sessions included",
            )
            .expect("valid metric"),
            websockets_active: IntGauge::new(
                "vestibule_websocket_connections_active",
                "Upgraded (websocket) connections currently proxied",
            )
            .expect("valid metric"),
            upstream_healthy: IntGaugeVec::new(
                Opts::new(
                    "vestibule_upstream_healthy",
                    "1 if the upstream server passes its health check",
                ),
                &["upstream", "server"],
            )
            .expect("valid metric"),
            upstream_failures: IntCounterVec::new(
                Opts::new(
                    "vestibule_upstream_failures_total",
                    "Failed attempts to reach an upstream, by pool and kind (connect, timeout, other)",
                ),
                &["upstream", "kind"],
            )
            .expect("valid metric"),
            reloads: IntCounterVec::new(
                Opts::new(
                    "vestibule_config_reloads_total",
                    "Configuration reloads by result",
                ),
                &["result"],
            )
            .expect("valid metric"),
            reload_success_time: IntGauge::new(
                "vestibule_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load",
            )
            .expect("valid metric"),
            tls_handshakes: IntCounterVec::new(
                Opts::new(
                    "vestibule_tls_handshakes_total",
                    "TLS handshakes by result (ok, unknown_sni, error) and protocol version",
                ),
                &["result", "version"],
            )
            .expect("valid metric"),
            cert_expiry: IntGaugeVec::new(
                Opts::new(
                    "vestibule_certificate_expiry_timestamp_seconds",
                    "notAfter of each served certificate, by vhost and source",
                ),
                &["vhost", "source"],
            )
            .expect("valid metric"),
            cert_reloads: IntCounterVec::new(
                Opts::new(
                    "vestibule_certificate_reloads_total",
                    "Certificates re-read because their files changed, by result",
                ),
                &["result"],
            )
            .expect("valid metric"),
            remote_online: IntGaugeVec::new(
                Opts::new(
                    "vestibule_remote_cluster_online",
                    "1 if the connected workspace pinged in the last 5 minutes",
                ),
                &["id"],
            )
            .expect("valid metric"),
            remote_last_ping: IntGaugeVec::new(
                Opts::new(
                    "vestibule_remote_cluster_last_ping_timestamp_seconds",
                    "Unix time of the last accepted ping of each connected workspace",
                ),
                &["id"],
            )
            .expect("valid metric"),
            onlyoffice_relayed: IntCounterVec::new(
                Opts::new(
                    "vestibule_onlyoffice_jwt_relayed_total",
                    "ONLYOFFICE requests whose JWT header was relayed, by vhost",
                ),
                &["vhost"],
            )
            .expect("valid metric"),
            onlyoffice_rejected: IntCounterVec::new(
                Opts::new(
                    "vestibule_onlyoffice_jwt_rejected_total",
                    "ONLYOFFICE requests refused with 403, by vhost and reason",
                ),
                &["vhost", "reason"],
            )
            .expect("valid metric"),
            push_notifications: IntCounterVec::new(
                Opts::new(
                    "vestibule_push_notifications_total",
                    "Push notifications by platform, type and result (ok, remove, fail); service_notifications_total",
                ),
                &["platform", "type", "result"],
            )
            .expect("valid metric"),
            push_removals: IntCounterVec::new(
                Opts::new(
                    "vestibule_push_removals_total",
                    "Device tokens reported dead, by platform and reason; service_removal_total",
                ),
                &["platform", "reason"],
            )
            .expect("valid metric"),
            push_destination_duration: HistogramVec::new(
                HistogramOpts::new(
                    "vestibule_push_destination_request_duration_seconds",
                    "Duration of each attempt to a destination (upstream, apns, fcm)",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["destination"],
            )
            .expect("valid metric"),
            push_bad_requests: IntCounter::new(
                "vestibule_push_bad_requests_total",
                "Malformed or unroutable push requests; service_bad_request_total",
            )
            .expect("valid metric"),
            push_rate_limited: IntCounter::new(
                "vestibule_push_rate_limited_total",
                "Push requests refused with 429",
            )
            .expect("valid metric"),
            push_forbidden: IntCounter::new(
                "vestibule_push_forbidden_total",
                "Push requests refused with 403: the client address is not in [push] allow",
            )
            .expect("valid metric"),
            push_acks: IntCounterVec::new(
                Opts::new("vestibule_push_acks_total", "Delivery acks received, by platform"),
                &["platform"],
            )
            .expect("valid metric"),
            acme_orders: IntCounterVec::new(
                Opts::new("vestibule_acme_orders_total", "ACME certificate orders by vhost and result"),
                &["vhost", "result"],
            )
            .expect("valid metric"),
            acme_last_success: IntGaugeVec::new(
                Opts::new(
                    "vestibule_acme_last_success_timestamp_seconds",
                    "Unix time of the last certificate issued by ACME, by vhost",
                ),
                &["vhost"],
            )
            .expect("valid metric"),
            mail_received: IntCounter::new("vestibule_mail_received_total", "Messages accepted and queued")
                .expect("valid metric"),
            mail_rejected: IntCounterVec::new(
                Opts::new("vestibule_mail_rejected_total", "Messages or connections refused, by reason"),
                &["reason"],
            )
            .expect("valid metric"),
            mail_delivered: IntCounter::new("vestibule_mail_delivered_total", "Recipients delivered")
                .expect("valid metric"),
            mail_deferred: IntCounter::new("vestibule_mail_deferred_total", "Delivery attempts deferred (4xx, network)")
                .expect("valid metric"),
            mail_bounced: IntCounter::new("vestibule_mail_bounced_total", "Recipients failed for good (5xx, expired)")
                .expect("valid metric"),
            mail_queue_size: IntGauge::new("vestibule_mail_queue_size", "Messages in the queue").expect("valid metric"),
            mail_oldest_age: IntGauge::new(
                "vestibule_mail_queue_oldest_age_seconds",
                "Age of the oldest queued message (0 when the queue is empty)",
            )
            .expect("valid metric"),
            mail_delivery_duration: Histogram::with_opts(
                HistogramOpts::new("vestibule_mail_delivery_duration_seconds", "Duration of each delivery attempt")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0]),
            )
            .expect("valid metric"),
            access_log_dropped: IntCounter::new(
                "vestibule_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind (slow disk or journal)",
            )
            .expect("valid metric"),
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new("vestibule_build_info", "Build information; the value is always 1"),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(m.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.http_duration.clone()),
            Box::new(m.http_active.clone()),
            Box::new(m.http_refused.clone()),
            Box::new(m.http_connections.clone()),
            Box::new(m.accept_errors.clone()),
            Box::new(m.websockets_active.clone()),
            Box::new(m.upstream_healthy.clone()),
            Box::new(m.upstream_failures.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.reload_success_time.clone()),
            Box::new(m.tls_handshakes.clone()),
            Box::new(m.cert_expiry.clone()),
            Box::new(m.cert_reloads.clone()),
            Box::new(m.remote_online.clone()),
            Box::new(m.onlyoffice_relayed.clone()),
            Box::new(m.acme_orders.clone()),
            Box::new(m.mail_received.clone()),
            Box::new(m.mail_rejected.clone()),
            Box::new(m.mail_delivered.clone()),
            Box::new(m.mail_deferred.clone()),
            Box::new(m.mail_bounced.clone()),
            Box::new(m.mail_queue_size.clone()),
            Box::new(m.mail_oldest_age.clone()),
            Box::new(m.mail_delivery_duration.clone()),
            Box::new(m.acme_last_success.clone()),
            Box::new(m.push_notifications.clone()),
            Box::new(m.push_removals.clone()),
            Box::new(m.push_destination_duration.clone()),
            Box::new(m.push_bad_requests.clone()),
            Box::new(m.push_rate_limited.clone()),
            Box::new(m.push_forbidden.clone()),
            Box::new(m.push_acks.clone()),
            Box::new(m.onlyoffice_rejected.clone()),
            Box::new(m.remote_last_ping.clone()),
            Box::new(m.access_log_dropped.clone()),
            Box::new(build),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        // process_cpu_seconds_total, process_open_fds, process_max_fds, ...: the names every
        // Prometheus user already has dashboards and alerts for (descriptors near the limit).
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        // Both results exist from the start at 0, so the first failure is an increase an alert
        // rule can see (a series born at 1 has no increase).
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
        }
        m
    }

    pub fn vhost(&self, vhost: &str) -> VhostMetrics {
        VhostMetrics {
            by_class: STATUS_CLASSES.map(|c| self.http_requests.with_label_values(&[vhost, c])),
            duration: self.http_duration.with_label_values(&[vhost]),
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::with_capacity(8192);
        let enc = prometheus::TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
