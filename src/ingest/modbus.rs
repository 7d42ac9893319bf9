//! The Modbus source: polls Modbus TCP and RTU devices by their register
//! maps and sends the readings into the pipeline.
//!
//! Devices on one link (the same TCP address, or the same serial port) share
//! one connection and one tokio task, so exactly one request is in flight
//! per connection or bus. Each device is polled every `poll_ms`, its first
//! poll staggered by its position among all devices so that a hundred
//! devices do not fire at once; a poll that overruns makes the schedule
//! skip ahead (counted), never bunch up.
//!
//! Failures (see [`crate::ingest::modbus_map`] for what they become):
//! - a Modbus exception is an answer: counted, no retry, the affected points
//!   read `NaN` with status 128;
//! - a timeout, transport error or garbled answer drops the connection (a
//!   late answer must not be taken for the next one) and is retried up to
//!   `retries` times on a fresh connection; after that the device's
//!   remaining points read `NaN` with status 16 and the device backs off;
//! - a link that cannot be opened backs off exponentially (from 250 ms to
//!   `modbus.max_backoff_ms`); while a link or device backs off its polls
//!   still produce status-16 readings, so the offline detector sees the
//!   silence and the readings say why.
//!
//! Event time of every reading is the poll time from the injected
//! [`Clock`]. The link tasks hand their readings to one forwarding thread
//! over a bounded tokio queue, because [`Router::send`] blocks while a shard
//! queue is full (backpressure then slows the polls, and is visible as late
//! polls).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;
use tokio_modbus::client::{Client, Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::slave::Slave;

use crate::config::Registry;
use crate::config::modbus::{
    DeviceConfig, Function, LinkKey, ModbusConfig, Parity, Transport, ValueType, WordOrder,
};
use crate::ingest::modbus_map::{self, Answer, Field, Plan, ReadRequest};
use crate::metrics::Metrics;
use crate::model::{Millis, Reading};
use crate::pipeline::{Batch, Clock, Payload, Router};

/// The source name in metrics.
pub const SOURCE: &str = "modbus";

/// First wait before reopening a link or polling a failed device again.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Capacity of the queue from the link tasks to the forwarding thread, in
/// device polls.
const QUEUE_POLLS: usize = 256;

/// How a link is opened.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkSpec {
    /// Modbus TCP to `HOST:PORT`.
    Tcp {
        /// As configured.
        address: String,
    },
    /// Modbus RTU on a serial port.
    Rtu {
        /// Serial port path.
        port: String,
        /// Baud rate.
        baud: u32,
        /// Parity.
        parity: Parity,
        /// Data bits.
        data_bits: u8,
        /// Stop bits.
        stop_bits: u8,
    },
}

impl std::fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSpec::Tcp { address } => write!(f, "tcp://{address}"),
            LinkSpec::Rtu { port, baud, .. } => write!(f, "rtu:{port}@{baud}"),
        }
    }
}

/// One device, ready to poll.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its name (metrics and logs).
    pub name: String,
    /// Unit id.
    pub unit: u8,
    /// The shard that owns its mine.
    pub shard: usize,
    /// Polling period.
    pub poll: Duration,
    /// Time allowed per request or connection attempt.
    pub timeout: Duration,
    /// Further attempts after a failure, within a poll.
    pub retries: u32,
    /// What to read and how to turn it into readings.
    pub plan: Plan,
}

/// Devices that share one connection or bus.
#[derive(Debug, Clone)]
pub struct Link {
    /// How to open it.
    pub spec: LinkSpec,
    /// Its devices.
    pub devices: Vec<Device>,
}

/// The readings of one device poll.
#[derive(Debug, Clone)]
pub struct Polled {
    /// Device name.
    pub device: Arc<str>,
    /// The shard that owns the device's mine.
    pub shard: usize,
    /// One reading per mapped point.
    pub readings: Vec<Reading>,
    /// Processing time of the poll (also the readings' event time).
    pub arrival: Millis,
    /// Instant the poll started, for latency metrics.
    pub received: Instant,
}

/// The Modbus source, built from a validated config.
pub struct ModbusSource {
    links: Vec<Link>,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

fn build_device(d: &DeviceConfig, registry: &Registry) -> anyhow::Result<Device> {
    let mine = registry
        .mine(&d.mine)
        .with_context(|| format!("device {}: unknown mine {}", d.name, d.mine))?;
    let mut fields = Vec::with_capacity(d.registers.len());
    for r in &d.registers {
        let point = registry
            .point(&r.point)
            .with_context(|| format!("device {}: unknown point {}", d.name, r.point))?;
        if registry.points[point as usize].mine != mine {
            bail!(
                "device {}: point {} is not a point of mine {}",
                d.name,
                r.point,
                d.mine
            );
        }
        let function = Function::parse(&r.function)
            .with_context(|| format!("device {}: function {:?}", d.name, r.function))?;
        let value_type: ValueType = r
            .value_type()
            .with_context(|| format!("device {}: point {}: type", d.name, r.point))?;
        let order = WordOrder::parse(&r.order)
            .with_context(|| format!("device {}: order {:?}", d.name, r.order))?;
        let status = match r.status_address {
            Some(a) => Some((
                r.status_function()
                    .with_context(|| format!("device {}: status_function", d.name))?,
                a,
            )),
            None => None,
        };
        fields.push(Field {
            point,
            function,
            address: r.address,
            value_type,
            order,
            scale: r.scale,
            offset: r.offset,
            status,
        });
    }
    Ok(Device {
        name: d.name.clone(),
        unit: d.unit,
        shard: registry.mines[mine as usize].shard,
        poll: Duration::from_millis(d.poll_ms.max(1)),
        timeout: Duration::from_millis(d.timeout_ms.max(1)),
        retries: d.retries,
        plan: modbus_map::plan(&fields),
    })
}

impl ModbusSource {
    /// Builds the links and request plans of every configured device. The
    /// config must have passed validation; what validation would refuse is
    /// an error here too.
    pub fn build(
        config: &ModbusConfig,
        registry: &Registry,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<ModbusSource> {
        let mut links: BTreeMap<LinkKey, Link> = BTreeMap::new();
        for d in &config.devices {
            let key = d
                .link()
                .with_context(|| format!("device {}: no transport address or port", d.name))?;
            let spec = match Transport::parse(&d.transport) {
                Some(Transport::Tcp) => LinkSpec::Tcp {
                    address: d.address.clone().unwrap_or_default(),
                },
                Some(Transport::Rtu) => LinkSpec::Rtu {
                    port: d.port.clone().unwrap_or_default(),
                    baud: d.baud,
                    parity: Parity::parse(&d.parity)
                        .with_context(|| format!("device {}: parity", d.name))?,
                    data_bits: d.data_bits,
                    stop_bits: d.stop_bits,
                },
                None => bail!("device {}: unknown transport {:?}", d.name, d.transport),
            };
            let device = build_device(d, registry)?;
            metrics.register_modbus_device(&device.name);
            links
                .entry(key)
                .or_insert_with(|| Link {
                    spec,
                    devices: Vec::new(),
                })
                .devices
                .push(device);
        }
        Ok(ModbusSource {
            links: links.into_values().collect(),
            max_backoff: Duration::from_millis(config.max_backoff_ms.max(1)),
            metrics,
            clock,
        })
    }

    /// The links, with their devices and plans.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Starts one polling task per link. Their polls arrive on the returned
    /// queue; the tasks end when `shutdown` turns true or the queue's
    /// receiver is dropped.
    pub fn spawn(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> (mpsc::Receiver<Polled>, Vec<JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(QUEUE_POLLS);
        let total: usize = self.links.iter().map(|l| l.devices.len()).sum();
        let start = TokioInstant::now();
        let mut position = 0usize;
        let mut tasks = Vec::with_capacity(self.links.len());
        for link in self.links {
            // Stagger: device k of n starts k/n of its period late.
            let first_due: Vec<TokioInstant> = link
                .devices
                .iter()
                .map(|d| {
                    let k = position as u128;
                    position += 1;
                    let offset = d.poll.as_nanos() * k / total.max(1) as u128;
                    start + Duration::from_nanos(offset as u64)
                })
                .collect();
            let poller = LinkPoller::new(
                link,
                first_due,
                self.max_backoff,
                self.metrics.clone(),
                self.clock.clone(),
            );
            tasks.push(tokio::spawn(poller.run(tx.clone(), shutdown.clone())));
        }
        (rx, tasks)
    }

    /// Polls until `shutdown` turns true, sending readings to their shards.
    pub async fn run(self, router: Router, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let devices: usize = self.links.iter().map(|l| l.devices.len()).sum();
        let links = self.links.len();
        let (mut rx, tasks) = self.spawn(shutdown);
        tracing::info!(devices, links, "modbus polling started");
        let forwarder = std::thread::Builder::new()
            .name("modbus-forward".into())
            .spawn(move || {
                while let Some(p) = rx.blocking_recv() {
                    let batch = Batch {
                        payload: Payload::Readings(p.readings),
                        arrival: p.arrival,
                        received: p.received,
                        source: SOURCE,
                        done: None,
                    };
                    if !router.send(p.shard, batch) {
                        break;
                    }
                }
            })
            .context("cannot start the modbus forwarding thread")?;
        for t in tasks {
            let _ = t.await;
        }
        let _ = tokio::task::spawn_blocking(move || forwarder.join()).await;
        Ok(())
    }
}

/// How one request went, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Exception,
    Timeout,
    TransportError,
    ProtocolError,
}

impl Outcome {
    fn key(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Exception => "exception",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
            Outcome::ProtocolError => "protocol_error",
        }
    }
}

/// Exponential backoff state.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Option<TokioInstant>,
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            until: None,
            next: INITIAL_BACKOFF,
        }
    }

    fn active(&self, now: TokioInstant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    fn fail(&mut self, now: TokioInstant, max: Duration) {
        self.until = Some(now + self.next);
        self.next = (self.next * 2).min(max);
    }

    fn reset(&mut self) {
        *self = Backoff::new();
    }
}

/// Per-device schedule and health.
struct DeviceState {
    due: TokioInstant,
    backoff: Backoff,
    name: Arc<str>,
}

/// The task that owns one link.
struct LinkPoller {
    link: Link,
    states: Vec<DeviceState>,
    conn: Option<Context>,
    link_backoff: Backoff,
    /// The link could not be opened during the current poll.
    open_failed: bool,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    /// Reused answer buffer.
    answers: Vec<Answer>,
}

impl LinkPoller {
    fn new(
        link: Link,
        first_due: Vec<TokioInstant>,
        max_backoff: Duration,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> LinkPoller {
        let states = link
            .devices
            .iter()
            .zip(first_due)
            .map(|(d, due)| DeviceState {
                due,
                backoff: Backoff::new(),
                name: Arc::from(d.name.as_str()),
            })
            .collect();
        LinkPoller {
            link,
            states,
            conn: None,
            link_backoff: Backoff::new(),
            open_failed: false,
            max_backoff,
            metrics,
            clock,
            answers: Vec::new(),
        }
    }

    async fn run(mut self, tx: mpsc::Sender<Polled>, mut shutdown: watch::Receiver<bool>) {
        if self.link.devices.is_empty() {
            return;
        }
        // The device due first (there is at least one).
        while let Some((i, due)) = self
            .states
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.due)
            .map(|(i, s)| (i, s.due))
        {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
            let polled = tokio::select! {
                _ = shutdown.changed() => break,
                p = self.poll_device(i) => p,
            };
            self.schedule_next(i);
            tokio::select! {
                _ = shutdown.changed() => break,
                sent = tx.send(polled) => if sent.is_err() { break },
            }
        }
        self.close().await;
    }

    /// Moves device `i`'s next poll one period on, skipping periods that
    /// have already passed.
    fn schedule_next(&mut self, i: usize) {
        let period = self.link.devices[i].poll;
        let st = &mut self.states[i];
        st.due += period;
        let now = TokioInstant::now();
        if st.due <= now {
            let behind = (now - st.due).as_nanos() / period.as_nanos().max(1) + 1;
            st.due += period * behind as u32;
            self.metrics
                .modbus_polls_late
                .with_label_values(&[&st.name])
                .inc_by(behind as u64);
        }
    }

    async fn close(&mut self) {
        if let Some(mut ctx) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), ctx.disconnect()).await;
        }
        self.set_connected(false);
    }

    fn set_connected(&self, up: bool) {
        for st in &self.states {
            self.metrics
                .modbus_connected
                .with_label_values(&[&st.name])
                .set(i64::from(up));
        }
    }

    fn drop_connection(&mut self) {
        if self.conn.take().is_some() {
            self.set_connected(false);
        }
    }

    /// Opens the link if it is closed. False when it cannot be opened.
    async fn ensure_connected(&mut self, i: usize) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let d = &self.link.devices[i];
        let opened = tokio::time::timeout(d.timeout, open(&self.link.spec, d.unit)).await;
        match opened {
            Ok(Ok(ctx)) => {
                self.conn = Some(ctx);
                self.link_backoff.reset();
                self.set_connected(true);
                tracing::info!(link = %self.link.spec, "modbus link open");
                true
            }
            Ok(Err(e)) => {
                self.connect_failed(i, &e.to_string());
                false
            }
            Err(_) => {
                self.connect_failed(i, "timed out");
                false
            }
        }
    }

    fn connect_failed(&mut self, i: usize, error: &str) {
        self.open_failed = true;
        let st = &self.states[i];
        self.metrics
            .modbus_connect_errors
            .with_label_values(&[&st.name])
            .inc();
        tracing::warn!(link = %self.link.spec, device = %st.name, error, "cannot open modbus link");
    }

    /// One request, with retries on fresh connections.
    async fn request(&mut self, i: usize, req: ReadRequest) -> Answer {
        let (unit, timeout, retries) = {
            let d = &self.link.devices[i];
            (d.unit, d.timeout, d.retries)
        };
        let name = self.states[i].name.clone();
        let mut attempt = 0;
        loop {
            if self.ensure_connected(i).await {
                let outcome = match self.conn.as_mut() {
                    Some(ctx) => {
                        ctx.set_slave(Slave(unit));
                        tokio::time::timeout(timeout, call(ctx, req)).await
                    }
                    None => Ok(Err(CallError::Transport("not connected".into()))),
                };
                let (answer, kind) = match outcome {
                    Ok(Ok(a @ Answer::Exception(_))) => (Some(a), Outcome::Exception),
                    Ok(Ok(a)) => (Some(a), Outcome::Ok),
                    Ok(Err(CallError::Protocol(e))) => {
                        tracing::warn!(device = %name, error = %e, "modbus device answered garbage");
                        (None, Outcome::ProtocolError)
                    }
                    Ok(Err(CallError::Transport(e))) => {
                        tracing::debug!(device = %name, error = %e, "modbus transport error");
                        (None, Outcome::TransportError)
                    }
                    Err(_) => (None, Outcome::Timeout),
                };
                self.metrics
                    .modbus_requests
                    .with_label_values(&[&name, kind.key()])
                    .inc();
                if let Some(a) = answer {
                    return a;
                }
                // A late or garbled answer must not be read as the next
                // one: start again on a fresh connection.
                self.drop_connection();
            }
            if attempt >= retries {
                return Answer::Unreachable;
            }
            attempt += 1;
        }
    }

    /// Polls device `i` once.
    async fn poll_device(&mut self, i: usize) -> Polled {
        let started = Instant::now();
        let arrival = self.clock.now_ms();
        let name = self.states[i].name.clone();
        self.metrics.messages.with_label_values(&[SOURCE]).inc();
        let n = self.link.devices[i].plan.requests.len();
        let mut answers = std::mem::take(&mut self.answers);
        answers.clear();
        let now = TokioInstant::now();
        let backing_off = self.states[i].backoff.active(now);
        let link_down = self.conn.is_none() && self.link_backoff.active(now);
        if !backing_off && !link_down {
            self.open_failed = false;
            for r in 0..n {
                let req = self.link.devices[i].plan.requests[r];
                let a = self.request(i, req).await;
                let unreachable = a == Answer::Unreachable;
                answers.push(a);
                if unreachable {
                    break;
                }
            }
            if answers.len() == n && !answers.contains(&Answer::Unreachable) {
                self.states[i].backoff.reset();
            } else {
                let now = TokioInstant::now();
                if self.open_failed {
                    // The link itself is down: every device on it waits.
                    self.link_backoff.fail(now, self.max_backoff);
                }
                self.states[i].backoff.fail(now, self.max_backoff);
                tracing::warn!(device = %name, link = %self.link.spec, "modbus device unreachable");
            }
        }
        answers.resize(n, Answer::Unreachable);
        let d = &self.link.devices[i];
        let mut readings = Vec::with_capacity(d.plan.fields.len());
        let faults = &self.metrics.modbus_faults;
        d.plan
            .readings(&answers, arrival, &mut readings, |_, fault| {
                faults.with_label_values(&[&name, fault.key()]).inc();
            });
        self.answers = answers;
        self.metrics
            .modbus_poll_seconds
            .observe(started.elapsed().as_secs_f64());
        Polled {
            device: name,
            shard: d.shard,
            readings,
            arrival,
            received: started,
        }
    }
}

/// Why a call produced no answer.
enum CallError {
    Transport(String),
    Protocol(String),
}

/// Sends one read request and checks the answer's length.
async fn call(ctx: &mut Context, req: ReadRequest) -> Result<Answer, CallError> {
    let (start, count) = (req.start, req.count);
    let result = match req.function {
        Function::Holding => ctx
            .read_holding_registers(start, count)
            .await
            .map(|r| r.map(Answer::Words)),
        Function::Input => ctx
            .read_input_registers(start, count)
            .await
            .map(|r| r.map(Answer::Words)),
        Function::Coil => ctx
            .read_coils(start, count)
            .await
            .map(|r| r.map(Answer::Bits)),
        Function::Discrete => ctx
            .read_discrete_inputs(start, count)
            .await
            .map(|r| r.map(Answer::Bits)),
    };
    match result {
        Ok(Ok(answer)) => {
            let got = match &answer {
                Answer::Words(w) => w.len(),
                Answer::Bits(b) => b.len(),
                _ => 0,
            };
            // Bits come in whole bytes; more than asked is padding.
            let ok = match &answer {
                Answer::Bits(_) => got >= usize::from(count),
                _ => got == usize::from(count),
            };
            if ok {
                Ok(answer)
            } else {
                Err(CallError::Protocol(format!(
                    "asked for {count} at {start}, got {got}"
                )))
            }
        }
        Ok(Err(exception)) => Ok(Answer::Exception(u8::from(exception))),
        Err(tokio_modbus::Error::Protocol(e)) => Err(CallError::Protocol(e.to_string())),
        Err(tokio_modbus::Error::Transport(e)) => Err(CallError::Transport(e.to_string())),
    }
}

/// Opens a link for `unit`.
async fn open(spec: &LinkSpec, unit: u8) -> std::io::Result<Context> {
    match spec {
        LinkSpec::Tcp { address } => {
            let mut last = None;
            for addr in tokio::net::lookup_host(address.as_str()).await? {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(tokio_modbus::client::tcp::attach_slave(stream, Slave(unit)));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{address} resolves to no address"),
                )
            }))
        }
        LinkSpec::Rtu {
            port,
            baud,
            parity,
            data_bits,
            stop_bits,
        } => {
            use tokio_serial::{DataBits, SerialPortBuilderExt, StopBits};
            let builder = tokio_serial::new(port.as_str(), *baud)
                .parity(match parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(match data_bits {
                    5 => DataBits::Five,
                    6 => DataBits::Six,
                    7 => DataBits::Seven,
                    _ => DataBits::Eight,
                })
                .stop_bits(if *stop_bits == 2 {
                    StopBits::Two
                } else {
                    StopBits::One
                });
            let stream = builder.open_native_async().map_err(std::io::Error::other)?;
            Ok(tokio_modbus::client::rtu::attach_slave(stream, Slave(unit)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::model::status;
    use crate::pipeline::SystemClock;

    fn config(address: &str, extra: &str) -> crate::config::Config {
        let text = format!(
            r#"
[modbus]
max_backoff_ms = 400
[[modbus.devices]]
name = "d1"
mine = "140121000001"
address = "{address}"
poll_ms = 100
timeout_ms = 100
retries = 1
{extra}
registers = [
  {{ point = "p1", address = 0, type = "f32" }},
  {{ point = "p2", address = 2, type = "u16", scale = 0.5 }},
]
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 1
points = [ {{ code = "p1", sensor = "0001", location = "face_t1" }}, {{ code = "p2", sensor = "0002" }} ]
"#
        );
        parse(&text).expect("valid").0
    }

    #[test]
    fn devices_on_one_address_share_a_link() {
        let mut c = config("127.0.0.1:1", "");
        let mut second = c.modbus.devices[0].clone();
        second.name = "d2".into();
        second.unit = 2;
        second.registers.clear();
        c.modbus.devices.push(second);
        let mut third = c.modbus.devices[1].clone();
        third.name = "d3".into();
        third.address = Some("127.0.0.1:2".into());
        c.modbus.devices.push(third);
        let reg = Registry::build(&c, 1);
        let src = ModbusSource::build(
            &c.modbus,
            &reg,
            Arc::new(Metrics::new(1)),
            Arc::new(SystemClock),
        )
        .expect("builds");
        let sizes: Vec<usize> = src.links().iter().map(|l| l.devices.len()).collect();
        assert_eq!(sizes, [2, 1]);
        assert_eq!(src.links()[0].devices[0].plan.requests.len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_device_reports_substation_faults_and_backs_off() {
        // A port nobody listens on: connections are refused at once.
        let port = crate::broker::free_port().expect("port");
        let c = config(&format!("127.0.0.1:{port}"), "");
        let reg = Registry::build(&c, 1);
        let metrics = Arc::new(Metrics::new(1));
        let src = ModbusSource::build(&c.modbus, &reg, metrics.clone(), Arc::new(SystemClock))
            .expect("builds");
        let (stop, stop_rx) = watch::channel(false);
        let (mut rx, tasks) = src.spawn(stop_rx);
        for _ in 0..5 {
            let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a poll within 5 s")
                .expect("open queue");
            assert_eq!(p.readings.len(), 2);
            for r in &p.readings {
                assert!(r.value.is_nan(), "{r:?}");
                assert_eq!(r.status, status::SUBSTATION_FAULT);
                assert_eq!(r.ts, p.arrival);
            }
        }
        let _ = stop.send(true);
        for t in tasks {
            t.await.expect("task ends");
        }
        let errors = metrics
            .modbus_connect_errors
            .with_label_values(&["d1"])
            .get();
        // Five polls 100 ms apart with backoff from 250 ms: fewer attempts
        // than polls × (1 + retries).
        assert!((1..10).contains(&errors), "{errors} connection attempts");
        let faults = metrics
            .modbus_faults
            .with_label_values(&["d1", "unreachable"])
            .get();
        assert!(faults >= 10 && faults.is_multiple_of(2), "{faults}");
    }

    #[tokio::test]
    async fn a_serial_port_that_cannot_be_opened_is_a_counted_substation_fault() {
        let text = r#"
[[modbus.devices]]
name = "bus"
mine = "140121000001"
transport = "rtu"
port = "/dev/minewatch-test-no-such-tty"
baud = 19200
parity = "even"
poll_ms = 100
timeout_ms = 100
retries = 0
registers = [ { point = "p1", address = 0, type = "f32" } ]
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 1
points = [ { code = "p1", sensor = "0001", location = "face_t1" } ]
"#;
        let c = parse(text).expect("valid").0;
        let reg = Registry::build(&c, 1);
        let metrics = Arc::new(Metrics::new(1));
        let src = ModbusSource::build(&c.modbus, &reg, metrics.clone(), Arc::new(SystemClock))
            .expect("builds");
        assert!(matches!(
            src.links()[0].spec,
            LinkSpec::Rtu {
                baud: 19200,
                parity: Parity::Even,
                ..
            }
        ));
        let (stop, stop_rx) = watch::channel(false);
        let (mut rx, tasks) = src.spawn(stop_rx);
        let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a poll")
            .expect("open queue");
        assert!(p.readings[0].value.is_nan());
        assert_eq!(p.readings[0].status, status::SUBSTATION_FAULT);
        let _ = stop.send(true);
        for t in tasks {
            t.await.expect("task ends");
        }
        assert!(
            metrics
                .modbus_connect_errors
                .with_label_values(&["bus"])
                .get()
                >= 1
        );
    }
}
