//! The simulator's Modbus TCP server: serves simulated mines' registers,
//! one unit id per mine, driven by the same scenario engine as the MQTT
//! publisher, so `minewatch demo` can run some mines over Modbus.
//!
//! - [`device_config`] generates a mine's register map (what a substation
//!   vendor's register table would say): gas points as `f32` ABCD holding
//!   registers, the other analog points in the other types and orders
//!   (`u16`, `i16` BADC, `u32` CDAB, `i32` DCBA, `f32` CDAB/DCBA) with
//!   scales, switches as coils, and one input status register per analog
//!   point carrying the national status bits.
//! - [`RegisterImages`] holds every unit's registers behind one lock shared
//!   (through an `Arc`) by every connection's [`tokio_modbus`] service. An
//!   address that is not mapped answers exception 02 (illegal data
//!   address); a unit that is not served answers exception 0B; a unit set
//!   silent does not answer at all (a substation that lost its link).
//! - [`ScenarioDriver`] steps the [`Simulation`] and writes each sample into the
//!   registers: a silent point gets status 32 (not polled), a silent mine
//!   stops answering.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use crate::config::modbus::{DeviceConfig, Function, RegisterConfig, ValueType, WordOrder};
use crate::config::{Config, MineConfig};
use crate::ingest::modbus_map::encode;
use crate::model::{SensorType, status};
use crate::simulators::scenario::{Scenario, Simulation};

/// First input register of the status block.
pub const STATUS_BASE: u16 = 1000;

/// The registers of one unit.
#[derive(Debug, Default, Clone)]
struct UnitImage {
    holding: HashMap<u16, u16>,
    input: HashMap<u16, u16>,
    coils: HashMap<u16, bool>,
    discrete: HashMap<u16, bool>,
    silent: bool,
}

impl UnitImage {
    fn words(map: &HashMap<u16, u16>, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        (u32::from(start)..u32::from(start) + u32::from(count))
            .map(|a| {
                u16::try_from(a)
                    .ok()
                    .and_then(|a| map.get(&a).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    fn bits(map: &HashMap<u16, bool>, start: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
        (u32::from(start)..u32::from(start) + u32::from(count))
            .map(|a| {
                u16::try_from(a)
                    .ok()
                    .and_then(|a| map.get(&a).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }
}

/// Every served unit's registers, shared by all connections.
#[derive(Debug, Default)]
pub struct RegisterImages {
    units: RwLock<HashMap<u8, UnitImage>>,
}

impl RegisterImages {
    /// No units yet.
    pub fn new() -> Arc<RegisterImages> {
        Arc::new(RegisterImages::default())
    }

    fn with_unit<T>(&self, unit: u8, f: impl FnOnce(&mut UnitImage) -> T) -> T {
        let mut units = self.units.write().unwrap_or_else(|e| e.into_inner());
        f(units.entry(unit).or_default())
    }

    /// Writes registers of `function` (holding or input) from `address` on.
    pub fn set_words(&self, unit: u8, function: Function, address: u16, words: &[u16]) {
        self.with_unit(unit, |u| {
            let map = match function {
                Function::Input => &mut u.input,
                _ => &mut u.holding,
            };
            for (i, w) in words.iter().enumerate() {
                map.insert(address.wrapping_add(i as u16), *w);
            }
        })
    }

    /// Writes one coil or discrete input.
    pub fn set_bit(&self, unit: u8, function: Function, address: u16, bit: bool) {
        self.with_unit(unit, |u| {
            let map = match function {
                Function::Discrete => &mut u.discrete,
                _ => &mut u.coils,
            };
            map.insert(address, bit);
        })
    }

    /// Writes a value as register map entry `r` says (type, order, scale,
    /// offset), and its status register if it has one.
    pub fn set_point(&self, unit: u8, r: &RegisterConfig, value: f64, st: u16) {
        let function = Function::parse(&r.function).unwrap_or(Function::Holding);
        let ty = r.value_type().unwrap_or(ValueType::U16);
        let order = WordOrder::parse(&r.order).unwrap_or(WordOrder::Abcd);
        let raw = if value.is_finite() {
            (value - r.offset) / r.scale
        } else if ty == ValueType::F32 {
            value
        } else {
            0.0
        };
        if function.is_bits() {
            self.set_bit(unit, function, r.address, raw != 0.0);
        } else {
            self.set_words(unit, function, r.address, &encode(ty, order, raw));
        }
        if let (Some(a), Some(f)) = (r.status_address, r.status_function()) {
            self.set_words(unit, f, a, &[st]);
        }
    }

    /// A silent unit answers nothing (its requests time out).
    pub fn set_silent(&self, unit: u8, silent: bool) {
        self.with_unit(unit, |u| u.silent = silent)
    }

    /// The answer to one request: `Ok(None)` is no answer at all.
    fn answer(&self, unit: u8, request: &Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        let units = self.units.read().unwrap_or_else(|e| e.into_inner());
        let Some(u) = units.get(&unit) else {
            return Err(ExceptionCode::GatewayTargetDevice);
        };
        if u.silent {
            return Ok(None);
        }
        let too_many = |count: u16, max: u16| count == 0 || count > max;
        let response = match *request {
            Request::ReadHoldingRegisters(start, count) => {
                if too_many(count, 125) {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                Response::ReadHoldingRegisters(UnitImage::words(&u.holding, start, count)?)
            }
            Request::ReadInputRegisters(start, count) => {
                if too_many(count, 125) {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                Response::ReadInputRegisters(UnitImage::words(&u.input, start, count)?)
            }
            Request::ReadCoils(start, count) => {
                if too_many(count, 2000) {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                Response::ReadCoils(UnitImage::bits(&u.coils, start, count)?)
            }
            Request::ReadDiscreteInputs(start, count) => {
                if too_many(count, 2000) {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                Response::ReadDiscreteInputs(UnitImage::bits(&u.discrete, start, count)?)
            }
            // The simulated substation is read-only.
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        Ok(Some(response))
    }
}

/// One connection's service: answers from the shared images.
struct ConnectionService {
    images: Arc<RegisterImages>,
}

impl Service for ConnectionService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.images.answer(req.slave, &req.request))
    }
}

/// A running Modbus TCP server.
pub struct ModbusServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ModbusServer {
    /// Listens on `listen` (port 0 picks a free port) and serves `images`.
    pub async fn start(
        listen: SocketAddr,
        images: Arc<RegisterImages>,
    ) -> std::io::Result<ModbusServer> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let images = images.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, move |_| {
                        Ok(Some(ConnectionService {
                            images: images.clone(),
                        }))
                    })
                }
            };
            let on_error = |e| tracing::debug!(error = %e, "modbus server connection error");
            let stopped = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            // Stopping drops the server, which closes every connection.
            if let Err(e) = server.serve_until(&on_connected, on_error, stopped).await {
                tracing::error!(error = %e, "modbus server stopped");
            }
        });
        Ok(ModbusServer { addr, stop, task })
    }

    /// Stops listening and closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The register map of simulated mine `mine`, as device `name` at `address`
/// (unit `unit`, polled every `poll_ms`).
pub fn device_config(
    mine: &MineConfig,
    name: &str,
    address: &str,
    unit: u8,
    poll_ms: u64,
) -> DeviceConfig {
    let mut holding: u16 = 0;
    let mut status_at: u16 = STATUS_BASE;
    let mut coil: u16 = 0;
    let registers = mine
        .points
        .iter()
        .map(|p| {
            let sensor = SensorType::parse(&p.sensor).unwrap_or(SensorType::Other(0));
            let reg =
                |function: &str, address: u16, ty: &str, order: &str, scale: f64| RegisterConfig {
                    point: p.code.clone(),
                    function: function.into(),
                    address,
                    value_type: Some(ty.into()),
                    order: order.into(),
                    scale,
                    offset: 0.0,
                    status_address: None,
                    status_function: None,
                };
            if sensor.code() >= 1000 {
                coil += 1;
                return reg("coil", coil - 1, "bool", "ABCD", 1.0);
            }
            let (ty, order, scale) = match sensor {
                s if s.gas().is_some() => ("f32", "ABCD", 1.0),
                SensorType::Other(2) => ("u16", "ABCD", 0.01),
                SensorType::Other(3) => ("i16", "BADC", 0.1),
                SensorType::Other(12) => ("u32", "CDAB", 0.001),
                SensorType::Other(13) => ("i32", "DCBA", 0.0001),
                SensorType::Other(14) => ("f32", "CDAB", 1.0),
                _ => ("f32", "DCBA", 1.0),
            };
            let width = ValueType::parse(ty).map_or(2, |t| t.width());
            let mut r = reg("holding", holding, ty, order, scale);
            holding += width;
            r.status_address = Some(status_at);
            r.status_function = Some("input".into());
            status_at += 1;
            r
        })
        .collect();
    DeviceConfig {
        name: name.into(),
        mine: mine.code.clone(),
        transport: "tcp".into(),
        address: Some(address.into()),
        port: None,
        baud: 9600,
        parity: "none".into(),
        data_bits: 8,
        stop_bits: 1,
        unit,
        poll_ms,
        timeout_ms: (poll_ms / 2).clamp(50, 1000),
        retries: 1,
        registers,
    }
}

/// A mine served by the driver: its index in the province, its unit id and
/// its register map.
#[derive(Debug, Clone)]
pub struct ServedMine {
    /// Index of the mine in the province.
    pub mine: usize,
    /// Unit id it answers as.
    pub unit: u8,
    /// Its register map (from [`device_config`]).
    pub device: DeviceConfig,
}

/// Writes a scenario's samples of the served mines into register images.
pub struct ScenarioDriver {
    sim: Simulation,
    served: Vec<ServedMine>,
    /// Per served mine, per point position: the register map entry.
    slots: Vec<Vec<Option<usize>>>,
    images: Arc<RegisterImages>,
}

impl ScenarioDriver {
    /// A driver of `served` mines of `province`, playing `scenario`.
    pub fn new(
        province: &Config,
        served: Vec<ServedMine>,
        scenario: Scenario,
        seed: u64,
        images: Arc<RegisterImages>,
    ) -> ScenarioDriver {
        let slots = served
            .iter()
            .map(|s| {
                province.mines[s.mine]
                    .points
                    .iter()
                    .map(|p| s.device.registers.iter().position(|r| r.point == p.code))
                    .collect()
            })
            .collect();
        ScenarioDriver {
            sim: Simulation::new(province, scenario, seed),
            served,
            slots,
            images,
        }
    }

    /// Writes the samples at `t` seconds into the script.
    pub fn step(&mut self, t: f64) {
        for (s, slots) in self.served.iter().zip(&self.slots) {
            self.images
                .set_silent(s.unit, self.sim.mine_silent(s.mine, t));
            for (j, slot) in slots.iter().enumerate() {
                let sample = self.sim.sample(s.mine, j, t);
                let Some(r) = slot.map(|k| &s.device.registers[k]) else {
                    continue;
                };
                match sample {
                    Some(x) => self.images.set_point(s.unit, r, x.value, x.status),
                    None => self
                        .images
                        .set_point(s.unit, r, f64::NAN, status::NOT_POLLED),
                }
            }
        }
    }

    /// Steps every `period` until `shutdown` turns true; `t` starts at 0
    /// when it is called, like the MQTT publisher's, so both play the same
    /// script.
    pub async fn run(mut self, period: Duration, mut shutdown: watch::Receiver<bool>) {
        let start = Instant::now();
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = every.tick() => {}
            }
            self.step(start.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate;
    use crate::simulators::province::{ProvinceSpec, province};

    #[test]
    fn generated_register_maps_are_valid_and_use_every_type() {
        let mut c = province(ProvinceSpec {
            mines: 2,
            points: 32,
            polling_secs: 5.0,
        });
        let d = device_config(&c.mines[1], "m2", "127.0.0.1:5020", 1, 1000);
        let types: std::collections::BTreeSet<String> = d
            .registers
            .iter()
            .filter_map(|r| r.value_type.clone().map(|t| format!("{t}/{}", r.order)))
            .collect();
        for t in [
            "f32/ABCD",
            "u16/ABCD",
            "i16/BADC",
            "u32/CDAB",
            "i32/DCBA",
            "f32/CDAB",
            "bool/ABCD",
        ] {
            assert!(types.contains(t), "{t} missing from {types:?}");
        }
        c.modbus.devices.push(d);
        let issues = validate(&c);
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn images_answer_reads_exceptions_and_silence() {
        let images = RegisterImages::new();
        images.set_words(1, Function::Holding, 0, &[1, 2, 3]);
        images.set_bit(1, Function::Coil, 5, true);
        assert_eq!(
            images.answer(1, &Request::ReadHoldingRegisters(1, 2)),
            Ok(Some(Response::ReadHoldingRegisters(vec![2, 3])))
        );
        assert_eq!(
            images.answer(1, &Request::ReadHoldingRegisters(2, 2)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            images.answer(1, &Request::ReadCoils(5, 1)),
            Ok(Some(Response::ReadCoils(vec![true])))
        );
        assert_eq!(
            images.answer(9, &Request::ReadCoils(5, 1)),
            Err(ExceptionCode::GatewayTargetDevice)
        );
        images.set_silent(1, true);
        assert_eq!(images.answer(1, &Request::ReadCoils(5, 1)), Ok(None));
    }
}
