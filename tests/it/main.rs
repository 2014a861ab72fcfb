//! ordo's integration tests: one binary, every store function on SQLite and PostgreSQL.

mod helpers;

mod api;
mod check;
mod cli;
mod console;
mod fuzz;
mod inventory;
mod lifecycle;
mod payments;
mod placement;
mod races;
mod security;
mod service;
mod sweep;
mod workload;
