//! The one encoding of messages that cross nodes: bincode 2 over serde, with a size limit. Kept
//! behind these two functions so it can be swapped without touching the messages.

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest message a node decodes; cluster messages carry ids, never data sets or models.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, config())
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, config()).map(|(value, _)| value)
}

/// A one-way actor message (`cast`) carrying `wire`.
pub fn to_cast<T: Serialize>(wire: &T) -> Result<SerializedMessage, BoxedDowncastErr> {
    let args = encode(wire).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a cluster message");
        BoxedDowncastErr
    })?;
    Ok(SerializedMessage::Cast {
        variant: String::new(),
        args,
        metadata: None,
    })
}

/// The wire value inside a cast received from another node.
pub fn from_cast<T: DeserializeOwned>(message: SerializedMessage) -> Result<T, BoxedDowncastErr> {
    match message {
        SerializedMessage::Cast { args, .. } => decode(&args).map_err(|e| {
            tracing::warn!(error = %e, "cannot decode a cluster message; dropped");
            BoxedDowncastErr
        }),
        _ => {
            tracing::warn!("unexpected call or reply from another node; dropped");
            Err(BoxedDowncastErr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use uuid::Uuid;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Wire {
        Train { id: Uuid, attempt: u32 },
        Idle { trainer: String },
    }

    #[test]
    fn messages_round_trip_and_oversized_ones_are_refused() {
        let msg = Wire::Train {
            id: Uuid::new_v4(),
            attempt: 3,
        };
        let bytes = encode(&msg).unwrap();
        assert!(bytes.len() < 32, "a task id and attempt stay small");
        assert_eq!(decode::<Wire>(&bytes).unwrap(), msg);
        let big = Wire::Idle {
            trainer: "x".repeat(MAX_MESSAGE_BYTES + 1),
        };
        let bytes = bincode::serde::encode_to_vec(&big, bincode::config::standard()).unwrap();
        assert!(
            decode::<Wire>(&bytes).is_err(),
            "oversized messages are refused"
        );
        assert!(decode::<Wire>(&[0xff; 5]).is_err());
    }
}
