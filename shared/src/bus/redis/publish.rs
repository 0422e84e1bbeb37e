//! PUBLISH on a connection of its own ([`connection`]): every event reaches the bus this way,
//! one pipelined round trip per [`Bus::publish_many`](crate::bus::Bus::publish_many) batch,
//! written straight from the payloads and answered by replies [`resp`] reads in place. Through
//! redis-rs each PUBLISH cost ~5 000 instructions (the pipeline's copies of every argument, the
//! multiplexer's driver, and `combine` for every `:1` reply).
//!
//! The connection is opened by the first round trip that needs one and kept between round
//! trips. A round trip takes it out and puts it back only once every reply was read, so one
//! cut short (failed, timed out, dropped) closes it rather than leave replies out of step; the
//! next opens a new one. So does a round trip that finds the kept one closed by Redis (a
//! restart while it sat idle), rather than lose its events on it.

use super::connection::{self, Incoming, Writer};
use super::resp::{self, Frame};
use super::COMMAND_TIMEOUT;
use crate::bus::{BusError, Keys};
use crate::ids::UserId;
use redis::ConnectionInfo;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub(super) struct Publishing {
    info: ConnectionInfo,
    /// The connection between two round trips.
    idle: Mutex<Option<(Incoming, Writer)>>,
}

impl Publishing {
    pub(super) fn new(info: ConnectionInfo) -> Self {
        Self {
            info,
            idle: Mutex::new(None),
        }
    }

    /// PUBLISH each payload on the channel of each of its users, in order, in one round trip
    /// bounded by [`COMMAND_TIMEOUT`] (waiting for another round trip and connecting included).
    /// Fails if any PUBLISH does.
    pub(super) async fn publish<'a>(
        &self,
        keys: &Keys,
        batch: impl IntoIterator<Item = (&'a [UserId], &'a str)>,
    ) -> Result<(), BusError> {
        let mut commands = Vec::new();
        let mut count = 0;
        for (users, payload) in batch {
            for &user in users {
                let channel = keys.user_channel(user);
                resp::command(
                    &mut commands,
                    &[b"PUBLISH", channel.as_bytes(), payload.as_bytes()],
                );
                count += 1;
            }
        }
        if count == 0 {
            return Ok(());
        }
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let round_trip = async {
            let mut idle = self.idle.lock().await;
            let kept = idle
                .take()
                .and_then(|mut open| open.0.still_open().then_some(open));
            let (mut incoming, mut writer) = match kept {
                Some(open) => open,
                None => connection::open(&self.info, deadline).await?,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            connection::write_within(&mut writer, &commands, left).await?;
            let mut refused = None;
            let mut replies = 0;
            while replies < count {
                match incoming.next()? {
                    Some(frame) => {
                        if let Frame::Error(error) = frame {
                            refused
                                .get_or_insert_with(|| String::from_utf8_lossy(error).into_owned());
                        }
                        incoming.consume();
                        replies += 1;
                    }
                    None => incoming.fill().await?,
                }
            }
            *idle = Some((incoming, writer));
            Ok::<_, String>(refused)
        };
        let error = match tokio::time::timeout_at(deadline, round_trip).await {
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(refused))) => format!("Redis refused it: {refused}"),
            Ok(Err(error)) => error,
            Err(_) => format!("Redis did not answer within {COMMAND_TIMEOUT:?}"),
        };
        Err(BusError(anyhow::anyhow!("PUBLISH: {error}")))
    }
}
