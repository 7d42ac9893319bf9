//! The mine simulator: a province of mines with realistic sensor values,
//! scripted scenarios, power and seal traffic (activity), an MQTT publisher and a Modbus TCP server. `minewatch demo` and
//! `minewatch simulate` run it; the tests and benches use it too.

pub mod activity;
pub mod activity_labelled;
pub mod labelled;
pub mod modbus_server;
pub mod netfile_writer;
pub mod province;
pub mod publish;
pub mod real;
pub mod scenario;
pub mod score;
pub mod webhook_receiver;

pub use province::{ProvinceSpec, province, to_toml, with_feeds};
pub use publish::{PublishPlan, Published};
pub use scenario::{Scenario, Simulation};
