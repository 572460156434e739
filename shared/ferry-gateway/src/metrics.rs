//! The gateway's Prometheus metrics (docs/api.md lists them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignIn {
    pub mechanism: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub api: String,
    pub verdict: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

/// Everything the gateway counts.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Counter,
    pub open: Gauge,
    pub sign_ins: Family<SignIn, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes: Family<Direction, Counter>,
    pub closed: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry_gateway");
        let connections = Counter::default();
        let open = Gauge::default();
        let sign_ins = Family::<SignIn, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes = Family::<Direction, Counter>::default();
        let closed = Family::<Reason, Counter>::default();
        registry.register(
            "connections",
            "Client connections accepted",
            connections.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            open.clone(),
        );
        registry.register(
            "sign_ins",
            "SASL sign-ins by mechanism and result (ok, failed, throttled)",
            sign_ins.clone(),
        );
        registry.register(
            "requests",
            "Requests of signed-in clients by API and verdict (allowed, denied)",
            requests.clone(),
        );
        registry.register(
            "bytes",
            "Bytes of requests (in) and responses (out)",
            bytes.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the gateway closed, by reason",
            closed.clone(),
        );
        Self {
            registry,
            connections,
            open,
            sign_ins,
            requests,
            bytes,
            closed,
        }
    }
}

impl Metrics {
    pub fn sign_in(&self, mechanism: &str, result: &str) {
        self.sign_ins
            .get_or_create(&SignIn {
                mechanism: mechanism.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn request(&self, api: &str, verdict: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                api: api.to_owned(),
                verdict: verdict.to_owned(),
            })
            .inc();
    }

    pub fn bytes(&self, direction: &str, n: u64) {
        self.bytes
            .get_or_create(&Direction {
                direction: direction.to_owned(),
            })
            .inc_by(n);
    }

    pub fn closed(&self, reason: &str) {
        self.closed
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
