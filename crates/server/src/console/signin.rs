//! The console's own way in besides the integrator's hint: an operator's one-time link. The
//! rest of entering and leaving is shared with the account pages ([`crate::signed_in`]).

use super::*;
use crate::extract::Meta;
use crate::pages::client_meta;
use crate::signed_in::{started, user_agent};
use axum::extract::Query;
use axum::http::HeaderMap;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct LinkQuery {
    #[serde(default)]
    link: String,
}

/// `GET /console/start?link=…`: an operator's one-time link (`twofold console link`).
pub(super) async fn link(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let meta = client_meta(&s, meta, &headers);
    let r = s
        .core
        .console_from_link(&meta, &q.link, user_agent(&headers))
        .await;
    started::<Console>(&s, r)
}
