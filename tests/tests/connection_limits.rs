//! Connection limits of a node, as shipped (issue 11): real `kith daemon` processes on
//! 127.0.0.1 with their default limits, and an attacker at 127.0.0.2 that opens
//! connection after connection to one of them. One identity gets
//! `DEFAULT_MAX_PER_PEER` connections and no more; one address gets
//! `DEFAULT_MAX_PER_IP` (refused before the handshake past it), however many
//! identities it makes up. Meanwhile the node's contacts keep chatting, and a new
//! contact from another address connects and chats.
//!
//! The attacker is `kith_p2p::conn_limits::testing::Flooder`: a raw libp2p peer that
//! speaks only ping and dials from a chosen loopback address.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kith_p2p::conn_limits::testing::{Flooder, Opened};
use kith_p2p::conn_limits::{DEFAULT_MAX_PER_IP, DEFAULT_MAX_PER_PEER};
use kith_p2p::libp2p::{Multiaddr, PeerId};
use kith_tests::{Peer, connect};

const DEADLINE: Duration = Duration::from_secs(60);

/// The attacker's address: not the contacts' 127.0.0.1.
const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Opens connections to `target` from a fresh identity until one is not served (at
/// most one more than a peer's limit); returns the flooder, holding the accepted ones,
/// their number, and how the last attempt ended.
async fn flood_from_one_identity(target: PeerId, addr: &Multiaddr) -> (Flooder, u32, Opened) {
    let mut mallory = Flooder::new(ATTACKER_IP, DEADLINE).unwrap();
    let mut last = Opened::Served;
    for _ in 0..=DEFAULT_MAX_PER_PEER {
        // Over the per-peer limit the node closes a connection right after the
        // handshake; over the per-IP limit it refuses the dial.
        last = mallory.open(target, addr).await.unwrap().1;
        if last != Opened::Served {
            break;
        }
    }
    let accepted = mallory.open_connections();
    (mallory, accepted, last)
}

#[test]
fn a_flood_of_connections_from_one_address_leaves_the_node_chatting() {
    let (alice, bob) = kith_tests::connected_pair();
    let target: PeerId = bob.peer_id.parse().unwrap();
    let addr: Multiaddr = bob.addrs[0].parse().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Held (open) while the contacts chat below.
    let mut flooders = Vec::new();
    runtime.block_on(async {
        // One identity: exactly the per-peer limit.
        let (first, accepted, stopped) = flood_from_one_identity(target, &addr).await;
        assert_eq!(accepted, DEFAULT_MAX_PER_PEER);
        assert_eq!(stopped, Opened::Closed, "the per-peer limit closes after the handshake");
        flooders.push(first);
        // More identities from the same address: together exactly the per-IP limit;
        // past it even a fresh identity is refused before its handshake.
        let mut total = accepted;
        let mut stopped = Opened::Served;
        for _ in 0..DEFAULT_MAX_PER_IP / DEFAULT_MAX_PER_PEER + 1 {
            let (sybil, accepted, how) = flood_from_one_identity(target, &addr).await;
            total += accepted;
            stopped = how;
            flooders.push(sybil);
            if accepted == 0 {
                break;
            }
        }
        assert_eq!(total, DEFAULT_MAX_PER_IP);
        assert_eq!(flooders.last().map(Flooder::open_connections), Some(0));
        assert_eq!(stopped, Opened::Refused, "past the per-IP limit the dial itself is refused");
    });

    // The existing contact still chats...
    let msg = alice.json(&["send", "Bob", "still here?", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
    // ...and a newcomer from another address connects and chats.
    let mut carol = Peer::init("Carol");
    carol.start(&[]);
    connect(&bob, &carol);
    let msg = carol.json(&["send", "Bob", "hello from carol", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
    // The flood was still holding its slots throughout.
    let held: u32 = flooders.iter().map(Flooder::open_connections).sum();
    assert_eq!(held, DEFAULT_MAX_PER_IP);
}
