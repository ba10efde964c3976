//! Shared state handed to every handler.

use crate::metrics::Metrics;
use std::sync::Arc;
use twofold_core::Twofold;

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Twofold>,
    pub metrics: Arc<Metrics>,
}
