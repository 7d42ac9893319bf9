//! Push channels (`[[alerting.channels]]`): placeholder shape until the
//! push branch lands.

use serde::Deserialize;

/// One channel.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelConfig {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: String,
}
