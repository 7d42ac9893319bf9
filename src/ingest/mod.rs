//! Sources: everything that turns outside bytes into [`crate::model::Reading`]s
//! (and a mine's power samples and seal events, [`activity`]).
//!
//! Every record refused on the way in gets a [`RejectReason`], is counted in
//! `minewatch_records_rejected_total{reason}` and is kept as a
//! [`DeadLetter`] (a JSON-lines file in the data directory, and the most
//! recent ones in memory for `GET /api/rejects`).

pub mod activity;
pub mod deadletter;
pub mod decode;
pub mod modbus;
pub mod modbus_map;
pub mod mqtt;
pub mod netfile;

pub use deadletter::{DeadLetter, DeadLetters};
pub use decode::{Decoded, Decoder};

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The payload is not JSON.
    MalformedJson,
    /// The payload is JSON but not a telemetry batch, or a reading is not an
    /// object with the expected fields.
    MalformedRecord,
    /// A field has the wrong type (a string where a number belongs, …).
    WrongType,
    /// A required field is missing.
    MissingField,
    /// A value is NaN or infinite.
    NonFiniteValue,
    /// The batch holds no readings.
    EmptyBatch,
    /// The batch holds more readings than `ingest.max_batch_readings`.
    BatchTooLarge,
    /// The payload is larger than `mqtt.max_payload_bytes`.
    PayloadTooLarge,
    /// The topic names a mine that is not configured.
    UnknownMine,
    /// The reading names a point that is not configured.
    UnknownPoint,
    /// The point belongs to another mine than the topic's.
    PointMineMismatch,
    /// The timestamp is more than `ingest.max_future_secs` ahead.
    FutureTimestamp,
    /// The timestamp is older than `ingest.max_past_secs`.
    PastTimestamp,
    /// The timestamp cannot be read.
    BadTimestamp,
    /// The topic is not one minewatch consumes.
    UnknownTopic,
    /// A national file without its `||` terminator that stopped growing.
    TruncatedFile,
    /// A national file whose name is not `<mine>_<TYPE>_<time>.txt`.
    MisnamedFile,
    /// A national file that is neither UTF-8 nor GBK.
    UndecodableFile,
    /// A national file whose name was processed before with other content.
    ConflictingReupload,
    /// A national file whose header names another mine than its file name.
    HeaderMismatch,
    /// A seal event names a camera the mine has not configured.
    UnknownCamera,
    /// A power sample names a circuit minewatch does not know.
    UnknownCircuit,
    /// A seal event of a kind minewatch does not know.
    UnknownEvent,
    /// A value that cannot be: a negative count or total load, a
    /// fractional count.
    InvalidValue,
}

impl RejectReason {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [RejectReason; 24] = [
        RejectReason::MalformedJson,
        RejectReason::MalformedRecord,
        RejectReason::WrongType,
        RejectReason::MissingField,
        RejectReason::NonFiniteValue,
        RejectReason::EmptyBatch,
        RejectReason::BatchTooLarge,
        RejectReason::PayloadTooLarge,
        RejectReason::UnknownMine,
        RejectReason::UnknownPoint,
        RejectReason::PointMineMismatch,
        RejectReason::FutureTimestamp,
        RejectReason::PastTimestamp,
        RejectReason::BadTimestamp,
        RejectReason::UnknownTopic,
        RejectReason::TruncatedFile,
        RejectReason::MisnamedFile,
        RejectReason::UndecodableFile,
        RejectReason::ConflictingReupload,
        RejectReason::HeaderMismatch,
        RejectReason::UnknownCamera,
        RejectReason::UnknownCircuit,
        RejectReason::UnknownEvent,
        RejectReason::InvalidValue,
    ];

    /// The label used in metrics and dead letters.
    pub fn key(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MalformedRecord => "malformed_record",
            RejectReason::WrongType => "wrong_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::EmptyBatch => "empty_batch",
            RejectReason::BatchTooLarge => "batch_too_large",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::UnknownMine => "unknown_mine",
            RejectReason::UnknownPoint => "unknown_point",
            RejectReason::PointMineMismatch => "point_mine_mismatch",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::PastTimestamp => "past_timestamp",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::TruncatedFile => "truncated_file",
            RejectReason::MisnamedFile => "misnamed_file",
            RejectReason::UndecodableFile => "undecodable_file",
            RejectReason::ConflictingReupload => "conflicting_reupload",
            RejectReason::HeaderMismatch => "header_mismatch",
            RejectReason::UnknownCamera => "unknown_camera",
            RejectReason::UnknownCircuit => "unknown_circuit",
            RejectReason::UnknownEvent => "unknown_event",
            RejectReason::InvalidValue => "invalid_value",
        }
    }
}
