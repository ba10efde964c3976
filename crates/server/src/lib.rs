//! The Twofold server: REST API (axum), OpenAPI document, metrics, health checks, and the
//! operator CLI behind the `twofold` binary.

pub mod account;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod console;
pub mod error;
pub mod extract;
pub mod keys;
pub mod keywatch;
pub mod metrics;
pub mod oidc;
pub mod oidc_enroll;
pub mod openapi;
pub mod pages;
pub mod qrimage;
pub mod rotation;
pub(crate) mod signed_in;
pub mod state;
pub mod web;

pub use app::{router, Application};
pub use config::Config;
