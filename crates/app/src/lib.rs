//! The composition root of examplebank: settings, telemetry, role selection and the wiring of
//! stores, keys and workers. Only this crate knows which store, which roles and which ports.

pub mod bootstrap;
pub mod commands;
pub mod demo;
pub mod net;
pub mod openapi;
pub mod roles;
pub mod routes;
pub mod server;
pub mod settings;
pub mod telemetry;
