//! Shared state handed to every handler.

use crate::metrics::Metrics;
use std::sync::Arc;
use twofold_core::Twofold;

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Twofold>,
    pub metrics: Arc<Metrics>,
    /// This node's delivery counters (absent in CLI-only uses).
    pub delivery: Option<Arc<twofold_delivery::DeliveryMetrics>>,
    /// The proxies whose forwarding headers the pages believe (INV-08).
    pub proxies: Arc<twofold_geo::TrustedProxies>,
    /// The pages are reached over https (`public_url`): their cookies are `Secure`. Browsers
    /// drop Secure cookies set over plain http, which would break the pages' forms.
    pub https: bool,
}
