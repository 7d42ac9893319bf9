//! The `[modbus]` section: Modbus TCP and RTU devices to poll and the
//! register map that turns their registers into readings of configured
//! points.
//!
//! The points themselves stay in `[[mines]] points` (they carry location and
//! thresholds); a register map entry names its point by code. Everything
//! here is plain text as the file says it; [`validate`] checks it with key
//! paths and hints, and the `parse` functions turn the words into the enums
//! the poller runs on (`crate::ingest::modbus_map`).

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use crate::config::{Config, Issue, Level};

/// Most registers one read request may ask for (Modbus application protocol
/// v1.1b3, §6.3/§6.4: 125).
pub const MAX_REGISTERS_PER_REQUEST: u16 = 125;
/// Most coils or discrete inputs one read request may ask for (§6.1/§6.2).
pub const MAX_BITS_PER_REQUEST: u16 = 2000;

/// Every Modbus device to poll.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ModbusConfig {
    /// The devices.
    pub devices: Vec<DeviceConfig>,
    /// Longest wait between reconnection attempts to an unreachable link or
    /// device, ms (the wait doubles from `min(timeout_ms, 500)` up to this).
    pub max_backoff_ms: u64,
}

impl Default for ModbusConfig {
    fn default() -> Self {
        ModbusConfig {
            devices: Vec::new(),
            max_backoff_ms: 10_000,
        }
    }
}

/// One Modbus device (one unit id behind one TCP address or serial port).
/// Devices with the same TCP `address` share one connection; devices on the
/// same serial `port` share one bus; either way one request is in flight at
/// a time.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceConfig {
    /// A name for logs and metrics (unique).
    pub name: String,
    /// The 12-digit code of the mine whose points it serves.
    pub mine: String,
    /// `tcp` or `rtu`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// TCP: `HOST:PORT` of the device or gateway.
    #[serde(default)]
    pub address: Option<String>,
    /// RTU: the serial port (`/dev/ttyUSB0`).
    #[serde(default)]
    pub port: Option<String>,
    /// RTU: baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// RTU: `none`, `even` or `odd`.
    #[serde(default = "default_parity")]
    pub parity: String,
    /// RTU: data bits (7 or 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// RTU: stop bits (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Unit (slave) id.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Polling period, ms.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Time allowed for one request (or one connection attempt), ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts after a timeout or transport error, within a poll.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The register map: one entry per point.
    #[serde(default)]
    pub registers: Vec<RegisterConfig>,
}

/// Where one point's value (and optionally its status) sits in a device.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterConfig {
    /// The point's national code; it must be a point of the device's mine.
    pub point: String,
    /// `holding`, `input`, `coil` or `discrete`.
    #[serde(default = "default_function")]
    pub function: String,
    /// Address of the (first) register or bit, 0-based as on the wire.
    pub address: u16,
    /// `u16`, `i16`, `u32`, `i32`, `f32` for registers; `bool` for bits
    /// (the default for coils and discrete inputs).
    #[serde(default, rename = "type")]
    pub value_type: Option<String>,
    /// Byte and word order: `ABCD` (big-endian, the Modbus default), `CDAB`
    /// (word swap), `BADC` (byte swap), `DCBA` (both). For 16-bit types only
    /// the byte order counts.
    #[serde(default = "default_order")]
    pub order: String,
    /// value = raw × scale + offset.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// value = raw × scale + offset.
    #[serde(default)]
    pub offset: f64,
    /// Address of a register holding the point's national status bits.
    #[serde(default)]
    pub status_address: Option<u16>,
    /// `holding` or `input`: the function of the status register (default:
    /// the value's function when it is a register, else `holding`).
    #[serde(default)]
    pub status_function: Option<String>,
}

fn default_transport() -> String {
    "tcp".into()
}
fn default_baud() -> u32 {
    9600
}
fn default_parity() -> String {
    "none".into()
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_unit() -> u8 {
    1
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_retries() -> u32 {
    2
}
fn default_function() -> String {
    "holding".into()
}
fn default_order() -> String {
    "ABCD".into()
}
fn default_scale() -> f64 {
    1.0
}

/// How a device is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Modbus TCP.
    Tcp,
    /// Modbus RTU over a serial line.
    Rtu,
}

impl Transport {
    /// Parses `tcp` / `rtu`.
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "tcp" => Some(Transport::Tcp),
            "rtu" => Some(Transport::Rtu),
            _ => None,
        }
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

impl Parity {
    /// Parses `none` / `even` / `odd`.
    pub fn parse(s: &str) -> Option<Parity> {
        match s {
            "none" => Some(Parity::None),
            "even" => Some(Parity::Even),
            "odd" => Some(Parity::Odd),
            _ => None,
        }
    }
}

/// A Modbus read function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// 0x01 read coils.
    Coil,
    /// 0x02 read discrete inputs.
    Discrete,
    /// 0x03 read holding registers.
    Holding,
    /// 0x04 read input registers.
    Input,
}

impl Function {
    /// Parses `holding` / `input` / `coil` / `discrete`.
    pub fn parse(s: &str) -> Option<Function> {
        match s {
            "holding" => Some(Function::Holding),
            "input" => Some(Function::Input),
            "coil" => Some(Function::Coil),
            "discrete" => Some(Function::Discrete),
            _ => None,
        }
    }

    /// The config word.
    pub fn key(self) -> &'static str {
        match self {
            Function::Holding => "holding",
            Function::Input => "input",
            Function::Coil => "coil",
            Function::Discrete => "discrete",
        }
    }

    /// True for coils and discrete inputs (one bit per address).
    pub fn is_bits(self) -> bool {
        matches!(self, Function::Coil | Function::Discrete)
    }

    /// Most addresses one request of this function may read.
    pub fn max_per_request(self) -> u16 {
        if self.is_bits() {
            MAX_BITS_PER_REQUEST
        } else {
            MAX_REGISTERS_PER_REQUEST
        }
    }
}

/// How a value is encoded in its register(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// One bit (coil or discrete input): 0 or 1.
    Bool,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit (two's complement).
    I16,
    /// Unsigned 32-bit, two registers.
    U32,
    /// Signed 32-bit, two registers.
    I32,
    /// IEEE 754 single precision, two registers.
    F32,
}

impl ValueType {
    /// Parses `bool` / `u16` / `i16` / `u32` / `i32` / `f32`.
    pub fn parse(s: &str) -> Option<ValueType> {
        match s {
            "bool" => Some(ValueType::Bool),
            "u16" => Some(ValueType::U16),
            "i16" => Some(ValueType::I16),
            "u32" => Some(ValueType::U32),
            "i32" => Some(ValueType::I32),
            "f32" => Some(ValueType::F32),
            _ => None,
        }
    }

    /// Addresses (registers or bits) the value occupies.
    pub fn width(self) -> u16 {
        match self {
            ValueType::Bool | ValueType::U16 | ValueType::I16 => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
        }
    }
}

/// Byte and word order of a value in its registers. The letters name the
/// bytes of the value from most to least significant (A first), in the
/// order they appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordOrder {
    /// Big-endian: registers AB, CD.
    Abcd,
    /// Word swap: registers CD, AB.
    Cdab,
    /// Byte swap: registers BA, DC.
    Badc,
    /// Little-endian: registers DC, BA.
    Dcba,
}

impl WordOrder {
    /// Parses `ABCD` / `CDAB` / `BADC` / `DCBA` (any case).
    pub fn parse(s: &str) -> Option<WordOrder> {
        match s.to_ascii_uppercase().as_str() {
            "ABCD" => Some(WordOrder::Abcd),
            "CDAB" => Some(WordOrder::Cdab),
            "BADC" => Some(WordOrder::Badc),
            "DCBA" => Some(WordOrder::Dcba),
            _ => None,
        }
    }

    /// True when the bytes within each register are swapped.
    pub fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }

    /// True when the two registers of a 32-bit value come low word first.
    pub fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }
}

impl RegisterConfig {
    /// The value's type: as written, or `bool` for bits when not written.
    pub fn value_type(&self) -> Option<ValueType> {
        match (&self.value_type, Function::parse(&self.function)) {
            (Some(t), _) => ValueType::parse(t),
            (None, Some(f)) if f.is_bits() => Some(ValueType::Bool),
            (None, _) => Some(ValueType::U16),
        }
    }

    /// The status register's function, with its default.
    pub fn status_function(&self) -> Option<Function> {
        match &self.status_function {
            Some(f) => Function::parse(f),
            None => match Function::parse(&self.function) {
                Some(Function::Input) => Some(Function::Input),
                _ => Some(Function::Holding),
            },
        }
    }
}

/// What identifies the connection a device is polled over: devices with the
/// same link share one connection (TCP) or bus (RTU).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKey {
    /// A TCP address as written.
    Tcp(String),
    /// A serial port path.
    Rtu(String),
}

impl DeviceConfig {
    /// The link of the device, if its transport and address are readable.
    pub fn link(&self) -> Option<LinkKey> {
        match Transport::parse(&self.transport)? {
            Transport::Tcp => Some(LinkKey::Tcp(self.address.clone()?)),
            Transport::Rtu => Some(LinkKey::Rtu(self.port.clone()?)),
        }
    }
}

/// True when `s` is `HOST:PORT` with a non-empty host and a port number.
fn is_host_port(s: &str) -> bool {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(':')
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// Checks the `[modbus]` section against the mines and points of `config`.
pub fn validate(config: &Config) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut err = |path: String, message: String, hint: &str| {
        out.push(Issue {
            level: Level::Error,
            path,
            message,
            hint: hint.into(),
        })
    };
    let mut warnings = Vec::new();
    let m = &config.modbus;
    if m.max_backoff_ms == 0 || m.max_backoff_ms > 600_000 {
        err(
            "modbus.max_backoff_ms".into(),
            format!("{} is out of range", m.max_backoff_ms),
            "use 1..=600000 ms; 10000 is usual",
        );
    }
    // Which mine each point belongs to, and each point's offline timeout.
    let mut point_mine: HashMap<&str, (&str, f64)> = HashMap::new();
    for mine in &config.mines {
        for p in &mine.points {
            let polling = p.polling_secs.unwrap_or(mine.polling_secs);
            let offline = p.offline_after_secs.unwrap_or(3.0 * polling);
            point_mine.insert(p.code.as_str(), (mine.code.as_str(), offline));
        }
    }
    let mines: HashSet<&str> = config.mines.iter().map(|m| m.code.as_str()).collect();
    let mut names = HashSet::new();
    let mut mapped: HashMap<&str, String> = HashMap::new();
    // (link, unit) → device path, and serial settings per port.
    let mut units: HashMap<(LinkKey, u8), String> = HashMap::new();
    let mut serial: HashMap<&str, (u32, &str, u8, u8, String)> = HashMap::new();
    for (di, d) in m.devices.iter().enumerate() {
        let dp = format!("modbus.devices[{di}]");
        if d.name.trim().is_empty() {
            err(
                format!("{dp}.name"),
                "empty device name".into(),
                "name each device; the name labels its metrics and log lines",
            );
        } else if !names.insert(d.name.as_str()) {
            err(
                format!("{dp}.name"),
                format!("device {:?} is listed twice", d.name),
                "device names must be unique",
            );
        }
        if !mines.contains(d.mine.as_str()) {
            err(
                format!("{dp}.mine"),
                format!("unknown mine {:?}", d.mine),
                "use the 12-digit code of a mine listed under [[mines]]",
            );
        }
        let transport = Transport::parse(&d.transport);
        match transport {
            None => err(
                format!("{dp}.transport"),
                format!("unknown transport {:?}", d.transport),
                "use \"tcp\" (with address = \"HOST:PORT\") or \"rtu\" (with port = \"/dev/ttyUSB0\")",
            ),
            Some(Transport::Tcp) => {
                match &d.address {
                    None => err(
                        format!("{dp}.address"),
                        "a tcp device needs an address".into(),
                        "write address = \"HOST:PORT\", e.g. \"192.168.1.20:502\"",
                    ),
                    Some(a) if !is_host_port(a) => err(
                        format!("{dp}.address"),
                        format!("{a:?} is not HOST:PORT"),
                        "write address = \"HOST:PORT\", e.g. \"192.168.1.20:502\"",
                    ),
                    Some(_) => {}
                }
                if d.port.is_some() {
                    err(
                        format!("{dp}.port"),
                        "port is for rtu devices".into(),
                        "a tcp device takes address = \"HOST:PORT\"; remove port",
                    );
                }
            }
            Some(Transport::Rtu) => {
                match &d.port {
                    Some(p) if !p.trim().is_empty() => {
                        let settings = (
                            d.baud,
                            d.parity.as_str(),
                            d.data_bits,
                            d.stop_bits,
                            dp.clone(),
                        );
                        match serial.get(p.as_str()) {
                            Some(first)
                                if (first.0, first.1, first.2, first.3)
                                    != (d.baud, d.parity.as_str(), d.data_bits, d.stop_bits) =>
                            {
                                err(
                                    format!("{dp}.baud"),
                                    format!(
                                        "serial settings differ from {} on the same port {p:?}",
                                        first.4
                                    ),
                                    "devices on one bus share its baud, parity, data and stop bits",
                                )
                            }
                            Some(_) => {}
                            None => {
                                serial.insert(p.as_str(), settings);
                            }
                        }
                    }
                    _ => err(
                        format!("{dp}.port"),
                        "an rtu device needs a serial port".into(),
                        "write port = \"/dev/ttyUSB0\" (or the port the bus is on)",
                    ),
                }
                if d.address.is_some() {
                    err(
                        format!("{dp}.address"),
                        "address is for tcp devices".into(),
                        "an rtu device takes port = \"/dev/tty…\"; remove address",
                    );
                }
                if !(50..=4_000_000).contains(&d.baud) {
                    err(
                        format!("{dp}.baud"),
                        format!("{} is not a baud rate", d.baud),
                        "use the bus's rate, e.g. 9600 or 19200",
                    );
                }
                if Parity::parse(&d.parity).is_none() {
                    err(
                        format!("{dp}.parity"),
                        format!("unknown parity {:?}", d.parity),
                        "use \"none\", \"even\" or \"odd\"",
                    );
                }
                if !(5..=8).contains(&d.data_bits) {
                    err(
                        format!("{dp}.data_bits"),
                        format!("{} data bits", d.data_bits),
                        "use 8 (Modbus RTU), or 5..=8 for unusual devices",
                    );
                }
                if !(1..=2).contains(&d.stop_bits) {
                    err(
                        format!("{dp}.stop_bits"),
                        format!("{} stop bits", d.stop_bits),
                        "use 1 or 2",
                    );
                }
                if !(1..=247).contains(&d.unit) {
                    err(
                        format!("{dp}.unit"),
                        format!("unit {} cannot be polled on a serial bus", d.unit),
                        "RTU unit ids are 1..=247 (0 is broadcast and never answers)",
                    );
                }
            }
        }
        if let Some(link) = d.link()
            && let Some(first) = units.insert((link, d.unit), dp.clone())
        {
            err(
                format!("{dp}.unit"),
                format!("unit {} on this link is already polled as {first}", d.unit),
                "merge the two register maps into one device",
            );
        }
        if d.poll_ms == 0 || d.poll_ms > 3_600_000 {
            err(
                format!("{dp}.poll_ms"),
                format!("{} is out of range", d.poll_ms),
                "use a period in 1..=3600000 ms; the rules ask for ≤ 25 s polling",
            );
        }
        if d.timeout_ms == 0 || d.timeout_ms > 60_000 {
            err(
                format!("{dp}.timeout_ms"),
                format!("{} is out of range", d.timeout_ms),
                "use 1..=60000 ms; 500 is usual on a LAN, 1000 on a serial bus",
            );
        }
        if d.retries > 10 {
            err(
                format!("{dp}.retries"),
                format!("{} retries", d.retries),
                "use 0..=10; more only delays the fault report",
            );
        }
        if d.poll_ms > 0 && d.timeout_ms >= d.poll_ms {
            warnings.push(Issue {
                level: Level::Warning,
                path: format!("{dp}.timeout_ms"),
                message: format!(
                    "a request may take {} ms, as long as the poll period of {} ms",
                    d.timeout_ms, d.poll_ms
                ),
                hint: "a device that stops answering then delays the polls of every device on \
                       its link; use a timeout well below poll_ms"
                    .into(),
            });
        }
        if d.registers.is_empty() {
            warnings.push(Issue {
                level: Level::Warning,
                path: format!("{dp}.registers"),
                message: format!("device {:?} maps no registers", d.name),
                hint: "it will be polled for nothing; map its points or remove it".into(),
            });
        }
        // (function, start, end, path, is_status)
        let mut spans: Vec<(Function, u32, u32, String, bool)> = Vec::new();
        for (ri, r) in d.registers.iter().enumerate() {
            let rp = format!("{dp}.registers[{ri}]");
            match point_mine.get(r.point.as_str()) {
                None => err(
                    format!("{rp}.point"),
                    format!("unknown point {:?}", r.point),
                    "map a point listed under [[mines]] points (the register map refers to points by code)",
                ),
                Some((mine, offline)) => {
                    if *mine != d.mine {
                        err(
                            format!("{rp}.point"),
                            format!(
                                "point {} belongs to mine {mine}, not to the device's mine {}",
                                r.point, d.mine
                            ),
                            "a device serves one mine; map the point on a device of its own mine",
                        );
                    }
                    if let Some(first) = mapped.insert(r.point.as_str(), rp.clone()) {
                        err(
                            format!("{rp}.point"),
                            format!("point {} is already mapped at {first}", r.point),
                            "a point is read from one register only",
                        );
                    }
                    if d.poll_ms > 0 && d.poll_ms as f64 > offline * 1000.0 {
                        warnings.push(Issue {
                            level: Level::Warning,
                            path: format!("{dp}.poll_ms"),
                            message: format!(
                                "poll period {} ms is longer than the offline timeout of point {} ({offline} s)",
                                d.poll_ms, r.point
                            ),
                            hint: "the point will go offline between polls; poll faster".into(),
                        });
                    }
                }
            }
            let function = Function::parse(&r.function);
            if function.is_none() {
                err(
                    format!("{rp}.function"),
                    format!("unknown function {:?}", r.function),
                    "use \"holding\", \"input\", \"coil\" or \"discrete\"",
                );
            }
            let ty = r.value_type();
            match (function, ty) {
                (_, None) => err(
                    format!("{rp}.type"),
                    format!("unknown type {:?}", r.value_type.as_deref().unwrap_or("")),
                    "use u16, i16, u32, i32 or f32 for registers, bool for coils and discrete inputs",
                ),
                (Some(f), Some(t)) if f.is_bits() != (t == ValueType::Bool) => err(
                    format!("{rp}.type"),
                    format!(
                        "a {} cannot hold a {:?} value",
                        f.key(),
                        r.value_type.as_deref().unwrap_or("bool")
                    ),
                    if f.is_bits() {
                        "coils and discrete inputs are single bits: use type = \"bool\" (or leave it out)"
                    } else {
                        "registers hold u16, i16, u32, i32 or f32; bool is for coils and discrete inputs"
                    },
                ),
                _ => {}
            }
            if WordOrder::parse(&r.order).is_none() {
                err(
                    format!("{rp}.order"),
                    format!("unknown order {:?}", r.order),
                    "use ABCD (big-endian), CDAB (word swap), BADC (byte swap) or DCBA (little-endian)",
                );
            }
            if !(r.scale.is_finite() && r.scale != 0.0) {
                err(
                    format!("{rp}.scale"),
                    format!("{} is not a scale", r.scale),
                    "use a finite, non-zero factor: value = raw × scale + offset",
                );
            }
            if !r.offset.is_finite() {
                err(
                    format!("{rp}.offset"),
                    format!("{} is not an offset", r.offset),
                    "use a finite number: value = raw × scale + offset",
                );
            }
            if let (Some(f), Some(t)) = (function, ty) {
                let end = u32::from(r.address) + u32::from(t.width());
                if end > 65_536 {
                    err(
                        format!("{rp}.address"),
                        format!(
                            "a {}-register value at {} runs past the last address 65535",
                            t.width(),
                            r.address
                        ),
                        "Modbus addresses are 0..=65535",
                    );
                } else {
                    spans.push((f, u32::from(r.address), end, format!("{rp}.address"), false));
                }
            }
            let status_fn = r.status_function();
            match (r.status_address, status_fn) {
                (_, None) => err(
                    format!("{rp}.status_function"),
                    format!(
                        "unknown function {:?}",
                        r.status_function.as_deref().unwrap_or("")
                    ),
                    "a status register is \"holding\" or \"input\"",
                ),
                (_, Some(f)) if f.is_bits() => err(
                    format!("{rp}.status_function"),
                    format!("a status register cannot be a {}", f.key()),
                    "the status is a 16-bit mask of national status bits: use \"holding\" or \"input\"",
                ),
                (Some(a), Some(f)) => spans.push((
                    f,
                    u32::from(a),
                    u32::from(a) + 1,
                    format!("{rp}.status_address"),
                    true,
                )),
                (None, Some(_)) => {
                    if r.status_function.is_some() {
                        err(
                            format!("{rp}.status_function"),
                            "status_function without status_address".into(),
                            "give status_address too, or remove status_function",
                        );
                    }
                }
            }
        }
        // Overlaps within the device: values must not overlap each other or
        // a status register; several points may share one status register.
        spans.sort_by_key(|s| (s.0, s.1, s.2));
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                if b.0 != a.0 || b.1 >= a.2 {
                    break;
                }
                let shared_status = a.4 && b.4 && a.1 == b.1;
                if !shared_status {
                    err(
                        b.3.clone(),
                        format!(
                            "{} addresses {}..{} overlap {} ({}..{})",
                            b.0.key(),
                            b.1,
                            b.2 - 1,
                            a.3,
                            a.1,
                            a.2 - 1
                        ),
                        "each value has registers of its own; check the device's register table",
                    );
                }
            }
        }
    }
    out.extend(warnings);
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{Level, parse};

    const MINES: &str = r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 5
points = [
  { code = "14012100000101MN0001001", sensor = "0001", location = "face_t1" },
  { code = "14012100000101MN0004002", sensor = "0004", location = "face_t2" },
  { code = "14012100000101KG1010003", sensor = "1010" },
]
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
points = [ { code = "14012100000201MN0001001", sensor = "0001", location = "face_t1" } ]
"#;

    fn with(devices: &str) -> String {
        format!("{MINES}\n{devices}")
    }

    const GOOD: &str = r#"
[[modbus.devices]]
name = "m1-sub-1"
mine = "140121000001"
address = "127.0.0.1:5020"
registers = [
  { point = "14012100000101MN0001001", address = 0, type = "f32", status_address = 100 },
  { point = "14012100000101MN0004002", address = 2, type = "i16", order = "BADC", scale = 0.1, status_address = 100 },
  { point = "14012100000101KG1010003", function = "coil", address = 0 },
]
"#;

    fn error_paths(text: &str) -> Vec<String> {
        match parse(text) {
            Ok((_, w)) => panic!("expected errors, got warnings {w:?}"),
            Err(e) => e
                .issues
                .iter()
                .filter(|i| i.level == Level::Error)
                .map(|i| {
                    assert!(!i.hint.is_empty(), "{i}");
                    i.path.clone()
                })
                .collect(),
        }
    }

    #[test]
    fn a_good_register_map_loads() {
        let (c, warnings) = parse(&with(GOOD)).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.modbus.devices[0].registers.len(), 3);
        assert_eq!(c.modbus.devices[0].poll_ms, 1000);
    }

    #[test]
    fn unknown_and_foreign_points_are_errors() {
        let text = with(
            &GOOD
                .replace(
                    "14012100000101MN0004002",
                    "14012100000201MN0001001", // mine b's point
                )
                .replace("14012100000101KG1010003", "nope"),
        );
        let paths = error_paths(&text);
        assert_eq!(
            paths,
            [
                "modbus.devices[0].registers[1].point",
                "modbus.devices[0].registers[2].point"
            ]
        );
    }

    #[test]
    fn overlapping_and_out_of_range_addresses_are_errors() {
        let text = with(
            &GOOD
                .replace("address = 2, type = \"i16\"", "address = 1, type = \"i16\"")
                .replace(
                    "function = \"coil\", address = 0",
                    "address = 65535, type = \"u32\"",
                ),
        );
        let paths = error_paths(&text);
        assert_eq!(
            paths,
            [
                "modbus.devices[0].registers[2].address",
                "modbus.devices[0].registers[1].address"
            ],
            "the u32 runs past 65535; the i16 at 1 overlaps the f32 at 0..1"
        );
        // A value overlapping a status register is an error too.
        let text = with(&GOOD.replace(
            "status_address = 100 },\n  { point = \"14012100000101MN0004002\"",
            "status_address = 2 },\n  { point = \"14012100000101MN0004002\"",
        ));
        assert_eq!(
            error_paths(&text),
            ["modbus.devices[0].registers[1].address"]
        );
    }

    #[test]
    fn bad_words_and_zero_periods_are_errors() {
        let text = with(
            &GOOD
                .replace("type = \"f32\"", "type = \"f64\"")
                .replace("order = \"BADC\"", "order = \"ABDC\"")
                .replace(
                    "function = \"coil\", address = 0",
                    "function = \"coil\", address = 0, type = \"u16\"",
                )
                .replace(
                    "address = \"127.0.0.1:5020\"",
                    "address = \"127.0.0.1\"\npoll_ms = 0\ntimeout_ms = 0",
                ),
        );
        let paths = error_paths(&text);
        for p in [
            "modbus.devices[0].address",
            "modbus.devices[0].poll_ms",
            "modbus.devices[0].timeout_ms",
            "modbus.devices[0].registers[0].type",
            "modbus.devices[0].registers[1].order",
            "modbus.devices[0].registers[2].type",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn unknown_mine_duplicate_names_and_units_are_errors() {
        // Same name, same link and unit as the first device, unknown mine.
        let second = r#"
[[modbus.devices]]
name = "m1-sub-1"
mine = "140121000009"
address = "127.0.0.1:5020"
"#;
        let paths = error_paths(&with(&format!("{GOOD}\n{second}")));
        assert_eq!(
            paths,
            [
                "modbus.devices[1].name",
                "modbus.devices[1].mine",
                "modbus.devices[1].unit"
            ]
        );
    }

    #[test]
    fn rtu_devices_need_a_port_and_agreeing_serial_settings() {
        let rtu = r#"
[[modbus.devices]]
name = "bus-a"
mine = "140121000001"
transport = "rtu"
port = "/dev/ttyUSB0"
unit = 2
registers = [ { point = "14012100000101MN0001001", address = 0, type = "f32" } ]
[[modbus.devices]]
name = "bus-b"
mine = "140121000001"
transport = "rtu"
port = "/dev/ttyUSB0"
baud = 19200
parity = "mark"
unit = 0
registers = [ { point = "14012100000101MN0004002", address = 0, type = "f32" } ]
[[modbus.devices]]
name = "bus-c"
mine = "140121000001"
transport = "rtu"
address = "10.0.0.1:502"
registers = []
"#;
        let paths = error_paths(&with(rtu));
        assert_eq!(
            paths,
            [
                "modbus.devices[1].baud",
                "modbus.devices[1].parity",
                "modbus.devices[1].unit",
                "modbus.devices[2].port",
                "modbus.devices[2].address",
            ]
        );
    }

    #[test]
    fn slow_polls_and_long_timeouts_are_warned_about() {
        let text = with(&GOOD.replace(
            "address = \"127.0.0.1:5020\"",
            "address = \"127.0.0.1:5020\"\npoll_ms = 20000\ntimeout_ms = 20000",
        ));
        let (_, warnings) = parse(&text).expect("warnings only");
        let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert!(paths.contains(&"modbus.devices[0].timeout_ms"), "{paths:?}");
        assert!(paths.contains(&"modbus.devices[0].poll_ms"), "{paths:?}");
    }
}
