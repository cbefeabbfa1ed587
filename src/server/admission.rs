//! Connection admission: at most [`MAX_CONNECTIONS`] served at once, at most
//! [`MAX_PER_PEER`] per client address; at either limit the connection idle the longest
//! makes room, never one with a request in flight (see the listener's documentation).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Connections served at once; at the cap the longest-idle one makes room for a newcomer.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// Connections one client address may hold: half the slots, so one address can never hold
/// them all (as nginx's `limit_conn` bounds one address).
pub(crate) const MAX_PER_PEER: usize = MAX_CONNECTIONS / 2;

/// A served connection's state, as the slot table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum State {
    /// No request in flight: a head not yet complete, or idle keep-alive. Evictable.
    Idle = 0,
    /// A request is being answered.
    Busy = 1,
    /// The response is returned and not yet flushed to the socket.
    Responded = 2,
}

/// One served connection in the slot table.
pub(super) struct Conn {
    pub(super) peer: IpAddr,
    pub(super) state: AtomicU8,
    /// When it last became idle (accepted, or its last response flushed), in nanoseconds
    /// since the table's epoch.
    pub(super) idle_since: AtomicU64,
    /// Told to close when evicted.
    pub(super) evict: Notify,
    pub(super) epoch: Instant,
}

impl Conn {
    pub(super) fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// Moves `from` → `to`; `false` when it was in another state.
    pub(super) fn advance(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    pub(super) fn request_started(&self) {
        self.advance(State::Idle, State::Busy);
    }

    pub(super) fn response_returned(&self) {
        self.advance(State::Busy, State::Responded);
    }

    /// The socket accepted every byte written so far: a returned response is out.
    pub(super) fn flushed(&self) {
        if self.state() == State::Responded as u8 {
            self.idle_since
                .store(nanos_since(self.epoch), Ordering::Relaxed);
            self.advance(State::Responded, State::Idle);
        }
    }
}

pub(super) fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Why a connection was closed to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Eviction {
    /// The cap was reached.
    Idle,
    /// Its address held [`MAX_PER_PEER`] connections.
    PerPeer,
}

/// The served connections: at most [`MAX_CONNECTIONS`], at most [`MAX_PER_PEER`] per address.
pub(super) struct Slots {
    pub(super) epoch: Instant,
    pub(super) table: Mutex<Table>,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            table: Mutex::default(),
        }
    }
}

#[derive(Default)]
pub(super) struct Table {
    pub(super) next_id: u64,
    pub(super) conns: HashMap<u64, Arc<Conn>>,
    pub(super) per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    /// The connection idle the longest among those `of` selects.
    pub(super) fn longest_idle(&self, of: impl Fn(&Conn) -> bool) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.state() == State::Idle as u8 && of(c))
            .min_by_key(|(id, c)| (c.idle_since.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.conns.remove(&id)?;
        if let Some(held) = self.per_peer.get_mut(&conn.peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.per_peer.remove(&conn.peer);
            }
        }
        Some(conn)
    }
}

/// What [`Slots::admit`] decided.
pub(super) struct Admission {
    /// The newcomer's slot; `None` when it is refused.
    pub(super) slot: Option<Slot>,
    /// A connection closed to make room for it.
    pub(super) evicted: Option<Eviction>,
}

impl Slots {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `peer` a slot, closing the longest-idle connection of that address (at its
    /// limit) or of anyone (at the cap) if needed.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        let mut table = self.lock();
        let held = table.per_peer.get(&peer).copied().unwrap_or(0);
        let (victim, reason) = if held >= MAX_PER_PEER {
            (table.longest_idle(|c| c.peer == peer), Eviction::PerPeer)
        } else if table.conns.len() >= MAX_CONNECTIONS {
            (table.longest_idle(|_| true), Eviction::Idle)
        } else {
            return Admission {
                slot: Some(self.insert(&mut table, peer)),
                evicted: None,
            };
        };
        let Some(victim) = victim.and_then(|id| table.remove(id)) else {
            return Admission {
                slot: None,
                evicted: None,
            };
        };
        // Its task drops the connection, closing the socket, when next polled.
        victim.evict.notify_one();
        Admission {
            slot: Some(self.insert(&mut table, peer)),
            evicted: Some(reason),
        }
    }

    pub(super) fn insert(self: &Arc<Self>, table: &mut Table, peer: IpAddr) -> Slot {
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn {
            peer,
            state: AtomicU8::new(State::Idle as u8),
            idle_since: AtomicU64::new(nanos_since(self.epoch)),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        table.conns.insert(id, conn.clone());
        *table.per_peer.entry(peer).or_default() += 1;
        Slot {
            slots: self.clone(),
            id,
            conn,
        }
    }
}

/// A served connection's place in the table; freed on drop (unless it was evicted).
pub(super) struct Slot {
    pub(super) slots: Arc<Slots>,
    pub(super) id: u64,
    pub(super) conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.slots.lock().remove(self.id);
    }
}

/// The socket of a served connection, telling its slot when a response is flushed.
pub(super) struct Tracked {
    pub(super) stream: TcpStream,
    pub(super) conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // hyper flushes the socket once its own buffer is empty: a response returned before
        // is then wholly in the kernel, and closing the socket no longer cuts it.
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.conn.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room_never_a_busy_one() {
        let slots = Arc::new(Slots::default());
        // Spread over addresses so that no one reaches its own limit.
        let mut held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|i| slots.admit(ip((i % 4) as u8)).slot.expect("a free slot"))
            .collect();
        // The oldest one has a request in flight, the second one's response is not flushed.
        held[0].conn.request_started();
        held[1].conn.request_started();
        held[1].conn.response_returned();
        let admitted = slots.admit(ip(9));
        assert_eq!(admitted.evicted, Some(Eviction::Idle));
        assert!(admitted.slot.is_some());
        assert_eq!(slots.lock().conns.len(), MAX_CONNECTIONS);
        // The third oldest went: the two before it were not idle.
        assert!(!slots.lock().conns.contains_key(&held[2].id));
        assert!(slots.lock().conns.contains_key(&held[0].id));
        assert!(slots.lock().conns.contains_key(&held[1].id));
        // Once flushed, the second one is idle again, since now.
        held[1].conn.flushed();
        assert_eq!(held[1].conn.state(), State::Idle as u8);

        // Every one busy: the newcomer is refused.
        for slot in slots.lock().conns.values() {
            slot.request_started();
        }
        let refused = slots.admit(ip(9));
        assert!(refused.slot.is_none() && refused.evicted.is_none());
        // A slot freed by its connection ending is taken without evicting anyone.
        drop(held.pop());
        let admitted = slots.admit(ip(9));
        assert!(admitted.slot.is_some() && admitted.evicted.is_none());
    }

    #[test]
    fn one_address_holds_at_most_its_share_and_evicts_its_own() {
        let slots = Arc::new(Slots::default());
        let other = slots.admit(ip(2)).slot.expect("a free slot");
        let held: Vec<Slot> = (0..MAX_PER_PEER)
            .map(|_| slots.admit(ip(1)).slot.expect("a free slot"))
            .collect();
        let admitted = slots.admit(ip(1));
        assert_eq!(admitted.evicted, Some(Eviction::PerPeer));
        // Its own oldest went, not the other address's older connection.
        assert!(!slots.lock().conns.contains_key(&held[0].id));
        assert!(slots.lock().conns.contains_key(&other.id));
        assert_eq!(slots.lock().per_peer.get(&ip(1)), Some(&MAX_PER_PEER));
        // Another address is served at once.
        assert_eq!(slots.admit(ip(3)).evicted, None);
    }
}
