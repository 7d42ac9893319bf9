//! The mine simulator: a province of mines with realistic sensor values,
//! scripted scenarios, and an MQTT publisher. `minewatch demo` and
//! `minewatch simulate` run it; the tests and benches use it too.

pub mod netfile_writer;
pub mod province;
pub mod publish;
pub mod scenario;

pub use province::{ProvinceSpec, province, to_toml};
pub use publish::{PublishPlan, Published};
pub use scenario::{Scenario, Simulation};
