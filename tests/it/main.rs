//! ordo's integration tests: one binary, every store function on SQLite and PostgreSQL.

mod helpers;

#[path = "../doubles/mod.rs"]
mod doubles;

mod api;
mod backup;
mod broker;
mod check;
mod cli;
mod console;
mod customers;
mod events;
mod failover;
mod flash;
mod fuzz;
mod inventory;
mod lifecycle;
mod limits;
mod monitoring;
mod payments;
mod placement;
mod providers;
mod races;
mod receiver;
mod security;
mod seed;
mod service;
mod shipping;
mod sweep;
mod workload;
