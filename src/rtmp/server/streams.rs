//! The NetStreams a connection created, and what each one does.

use super::MAX_STREAMS_PER_CONNECTION;

/// What a NetStream of the connection does; publish and play are pending while the
/// application decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamRole {
    Created,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

/// What the connection as a whole does, which decides the deadline it is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activity {
    /// A stream publishes: the publisher must keep sending.
    Publishing,
    /// A stream plays (and none publishes): a player may be silent while it watches.
    Playing,
    /// Nothing publishes or plays: the connection only costs, so its time is bounded.
    Neither,
}

/// The NetStreams created by the peer: (id, role). Tiny, so a Vec beats a map.
#[derive(Debug)]
pub(super) struct NetStreams {
    list: Vec<(u32, StreamRole)>,
    next_id: u32,
}

impl NetStreams {
    pub(super) fn new() -> Self {
        Self {
            list: Vec::new(),
            next_id: 1,
        }
    }

    /// Creates a stream and returns its id; `None` when the connection has
    /// [`MAX_STREAMS_PER_CONNECTION`] already. Ids are never reused.
    pub(super) fn create(&mut self) -> Option<u32> {
        if self.list.len() as u32 >= MAX_STREAMS_PER_CONNECTION {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.list.push((id, StreamRole::Created));
        Some(id)
    }

    pub(super) fn role(&self, stream_id: u32) -> Option<StreamRole> {
        self.list
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, role)| *role)
    }

    /// Sets the role of an existing stream; unknown ids are ignored.
    pub(super) fn set_role(&mut self, stream_id: u32, role: StreamRole) {
        if let Some(entry) = self.list.iter_mut().find(|(id, _)| *id == stream_id) {
            entry.1 = role;
        }
    }

    pub(super) fn remove(&mut self, stream_id: u32) {
        self.list.retain(|(id, _)| *id != stream_id);
    }

    /// The ids of the streams that publish, in creation order.
    pub(super) fn publishing(&self) -> impl Iterator<Item = u32> + '_ {
        self.list
            .iter()
            .filter(|(_, role)| *role == StreamRole::Publishing)
            .map(|(id, _)| *id)
    }

    pub(super) fn activity(&self) -> Activity {
        let has = |wanted| self.list.iter().any(|(_, role)| *role == wanted);
        if has(StreamRole::Publishing) {
            Activity::Publishing
        } else if has(StreamRole::Playing) {
            Activity::Playing
        } else {
            Activity::Neither
        }
    }
}
