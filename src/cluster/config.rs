//! The `[cluster]` section: off by default (single-node mode); when on,
//! readings come from NATS JetStream instead of the MQTT broker and this
//! instance shares the partitions of the province with the others.

use serde::Deserialize;

use crate::config::{Issue, Level};

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// Run in cluster mode.
    pub enabled: bool,
    /// The NATS server (`nats://host:port`).
    pub nats_url: String,
    /// This instance's id, unique in the cluster (letters, digits, `-`, `_`).
    pub instance_id: String,
    /// Number of partitions of the mines; must equal the `P` of the
    /// nats-server mapping `{{partition(P,1)}}`.
    pub partitions: u16,
    /// A lease not renewed for this long expires and its partition is
    /// taken over, seconds.
    pub lease_ttl_secs: u64,
    /// The JetStream stream that keeps `part.*.mines.*.*`.
    pub stream: String,
    /// The key-value bucket of the leases.
    pub bucket: String,
    /// How long the stream keeps messages, seconds.
    pub retention_secs: u64,
    /// How much acknowledged history a new owner replays to warm its
    /// detectors, seconds.
    pub warmup_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            nats_url: "nats://127.0.0.1:4222".into(),
            instance_id: String::new(),
            partitions: 16,
            lease_ttl_secs: 6,
            stream: "MINEWATCH".into(),
            bucket: "minewatch_leases".into(),
            retention_secs: 6 * 3600,
            warmup_secs: 1800,
        }
    }
}

/// True for a name NATS takes as one subject token / stream / bucket name.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    /// Checks the section (only when it is enabled).
    pub fn validate(&self, out: &mut Vec<Issue>) {
        if !self.enabled {
            return;
        }
        let mut err = |key: &str, message: String, hint: &str| {
            out.push(Issue {
                level: Level::Error,
                path: format!("cluster.{key}"),
                message,
                hint: hint.into(),
            })
        };
        if !(self.nats_url.starts_with("nats://") || self.nats_url.starts_with("tls://")) {
            err(
                "nats_url",
                format!("{:?} is not a nats:// or tls:// URL", self.nats_url),
                "e.g. nats://127.0.0.1:4222",
            );
        }
        if !plain_name(&self.instance_id) {
            err(
                "instance_id",
                format!("{:?} is empty or not a plain name", self.instance_id),
                "give each instance its own id of letters, digits, '-' or '_', e.g. \"mw-1\"",
            );
        }
        if self.partitions == 0 || self.partitions > 1024 {
            err(
                "partitions",
                format!("{} is out of range", self.partitions),
                "use 1..=1024, the P of nats-server's {{partition(P,1)}} mapping; 16 is usual",
            );
        }
        if !(2..=60).contains(&self.lease_ttl_secs) {
            err(
                "lease_ttl_secs",
                format!("{} is out of range", self.lease_ttl_secs),
                "use 2..=60; 6 gives a takeover within about 10 s",
            );
        }
        for (key, v) in [("stream", &self.stream), ("bucket", &self.bucket)] {
            if !plain_name(v) {
                err(
                    key,
                    format!("{v:?} is not a plain name"),
                    "letters, digits, '-' or '_'",
                );
            }
        }
        if self.retention_secs < 60 {
            err(
                "retention_secs",
                format!("{} is too short", self.retention_secs),
                "keep at least the longest detector window; 21600 (6 h) is usual",
            );
        }
        if self.warmup_secs > self.retention_secs {
            err(
                "warmup_secs",
                format!(
                    "{} is longer than retention_secs ({})",
                    self.warmup_secs, self.retention_secs
                ),
                "the stream must still hold what a new owner replays",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(c: &ClusterConfig) -> Vec<String> {
        let mut out = Vec::new();
        c.validate(&mut out);
        out.into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn off_by_default_and_checked_only_when_on() {
        let c = ClusterConfig::default();
        assert!(!c.enabled);
        assert!(issues(&c).is_empty());
        let on = ClusterConfig {
            enabled: true,
            ..ClusterConfig::default()
        };
        assert_eq!(issues(&on), ["cluster.instance_id"]);
        let ok = ClusterConfig {
            instance_id: "mw-1".into(),
            ..on
        };
        assert!(issues(&ok).is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        let c = ClusterConfig {
            enabled: true,
            nats_url: "http://x".into(),
            instance_id: "a.b".into(),
            partitions: 0,
            lease_ttl_secs: 1,
            stream: "x y".into(),
            bucket: String::new(),
            retention_secs: 10,
            warmup_secs: 20,
        };
        assert_eq!(
            issues(&c),
            [
                "cluster.nats_url",
                "cluster.instance_id",
                "cluster.partitions",
                "cluster.lease_ttl_secs",
                "cluster.stream",
                "cluster.bucket",
                "cluster.retention_secs",
                "cluster.warmup_secs"
            ]
        );
    }
}
