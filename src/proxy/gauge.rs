//! A gauge held up for as long as a value lives.

/// Decrements a gauge when the request (or websocket session) ends, however it ends.
pub struct GaugeGuard(prometheus::IntGauge);

impl GaugeGuard {
    /// Increment `g` now; decrement it when the guard drops.
    pub fn new(g: &prometheus::IntGauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
