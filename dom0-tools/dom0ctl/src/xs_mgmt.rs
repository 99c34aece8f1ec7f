//! The [`StorePipe`] over the management channel: the session's own
//! store connection in dom0 (privileged, as a xenstored socket client),
//! reached with [`Request::Xenstore`]; what the store says later (watch
//! events) comes as [`Event::XenstoreOutput`].

use std::time::{Duration, Instant};

use mgmt::{Event, Reply, Request, MAX_XENSTORE_DATA};

use crate::client::{unexpected, Client};
use crate::error::CliError;
use crate::xs_link::StorePipe;

/// How often in a row the store may take none of our bytes (it holds too
/// many unread replies, which each call hands back) before we give up.
const MAX_STALLS: u32 = 100;

/// The session's store connection, borrowed from a [`Client`].
pub struct MgmtPipe<'a> {
    client: &'a mut Client,
    /// Store output that came with replies, not yet handed out.
    pending: Vec<u8>,
}

impl<'a> MgmtPipe<'a> {
    /// A pipe over `client`'s session.
    pub fn new(client: &'a mut Client) -> Self {
        Self {
            client,
            pending: Vec::new(),
        }
    }
}

impl StorePipe for MgmtPipe<'_> {
    fn send(&mut self, messages: &[u8]) -> Result<(), CliError> {
        let mut rest = messages;
        let mut stalls = 0;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(MAX_XENSTORE_DATA)];
            let (taken, data) = match self.client.call(Request::Xenstore {
                data: chunk.to_vec(),
            })? {
                Reply::Xenstore { taken, data } => (taken as usize, data),
                other => return Err(unexpected(&other)),
            };
            // Output that came as events while the reply was awaited
            // precedes the reply's.
            for event in self.client.take_events() {
                if let Event::XenstoreOutput { data } = event {
                    self.pending.extend_from_slice(&data);
                }
            }
            self.pending.extend_from_slice(&data);
            if taken > chunk.len() {
                return Err(CliError::Protocol(format!(
                    "the agent says the store took {taken} of {} bytes",
                    chunk.len()
                )));
            }
            stalls = if taken == 0 { stalls + 1 } else { 0 };
            if stalls > MAX_STALLS {
                return Err(CliError::Protocol(
                    "the store takes no more requests from this session".into(),
                ));
            }
            rest = &rest[taken..];
        }
        Ok(())
    }

    fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, CliError> {
        if !self.pending.is_empty() {
            return Ok(std::mem::take(&mut self.pending));
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.client.next_event_until(deadline)? {
                Some(Event::XenstoreOutput { data }) => return Ok(data),
                // Console events belong to no store conversation.
                Some(_) => {}
                None => return Ok(Vec::new()),
            }
        }
    }
}
