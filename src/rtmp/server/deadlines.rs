//! The time limits of one server connection, taken in as clock readings from the driver.
//!
//! The session reads no clock. The driver says when it accepted the connection
//! ([`super::ServerSession::new`]) and when it read each batch of bytes
//! ([`super::ServerSession::poll`]); every deadline counts from those, so the rules below are
//! plain unit tests with made-up instants:
//!
//! - The handshake and the connect command must be done `handshake_timeout` after the accept
//!   (the TCP accept, so a slow TLS handshake before it counts too).
//! - A publisher must not fall silent for `idle_timeout`: its deadline moves with every read.
//! - A connection that neither publishes nor plays is closed `idle_timeout` after connect, or
//!   after its publish or play ended, whatever it sends: a peer trickling keepalives must not
//!   hold a connection (and its memory) that it never streams on.
//! - A player has no deadline here: it may stay silent for hours while it watches. (A player
//!   waiting for a stream that is not live is the application's business: the driver bounds
//!   that wait itself.)
//! - Commands (and every other message that is not media) are limited to
//!   `max_commands_per_sec`, measured per read ([`CommandRate`]).

use std::time::{Duration, Instant};

use super::command_rate::CommandRate;
use super::streams::Activity;
use super::{ServerConfig, SessionError};

/// Which rule a deadline enforces, for the error it ends the connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    Handshake,
    PublisherSilent,
    NotStreaming,
}

/// The deadlines of one connection and the clock readings they count from.
#[derive(Debug)]
pub(super) struct Deadlines {
    handshake_timeout: Duration,
    idle_timeout: Duration,
    /// When the connection was accepted.
    accepted: Instant,
    /// When the driver last read bytes from the peer (the accept, before any read).
    last_read: Instant,
    /// Since when the connection has neither published nor played (from connect, or from
    /// the end of its publish or play); `None` while it does, or before connect.
    idle_since: Option<Instant>,
    commands: CommandRate,
}

impl Deadlines {
    pub(super) fn new(config: &ServerConfig, accepted: Instant) -> Self {
        Self {
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            accepted,
            last_read: accepted,
            idle_since: None,
            commands: CommandRate::new(config.max_commands_per_sec, accepted),
        }
    }

    /// The driver read bytes at `at`. Readings never go back: a late one is ignored.
    pub(super) fn read_at(&mut self, at: Instant) {
        self.last_read = self.last_read.max(at);
    }

    /// Notes what the connection does now, after a command or an answer of the application
    /// may have changed it: the idle clock starts when it stops streaming (or connects),
    /// counted from the read that brought the change.
    pub(super) fn track(&mut self, connected: bool, activity: Activity) {
        let idle = connected && activity == Activity::Neither;
        self.idle_since = match self.idle_since {
            Some(since) if idle => Some(since),
            _ if idle => Some(self.last_read),
            _ => None,
        };
    }

    /// The deadline in force and the rule behind it; `None` while the connection plays.
    pub(super) fn next(&self, connected: bool, activity: Activity) -> Option<(Instant, Expiry)> {
        if !connected {
            return Some((self.accepted + self.handshake_timeout, Expiry::Handshake));
        }
        match activity {
            Activity::Publishing => {
                Some((self.last_read + self.idle_timeout, Expiry::PublisherSilent))
            }
            Activity::Playing => None,
            Activity::Neither => Some((
                self.idle_since.unwrap_or(self.last_read) + self.idle_timeout,
                Expiry::NotStreaming,
            )),
        }
    }

    /// The error a deadline that passed ends the connection with.
    pub(super) fn error(&self, expiry: Expiry) -> SessionError {
        match expiry {
            Expiry::Handshake => SessionError::HandshakeTimeout(self.handshake_timeout),
            Expiry::PublisherSilent => SessionError::Idle(self.idle_timeout),
            Expiry::NotStreaming => SessionError::NotStreaming(self.idle_timeout),
        }
    }

    /// Checks the running total of commands after the messages of the last read were
    /// handled: they all arrived at that read.
    pub(super) fn check_commands(&mut self, total: u64) -> Result<(), SessionError> {
        self.commands.check(total, self.last_read)
    }
}
