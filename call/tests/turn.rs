//! kith's TURN server with webrtc's own TURN client: two media sessions that may
//! offer relayed candidates only, so every packet between them crosses the server;
//! and the server's refusals, probed with raw STUN requests.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Capture;
use kith_call::turn::{TurnConfig, TurnGrant, TurnServer};
use kith_call::wav::WavSource;
use kith_call::{MediaConfig, Session, SessionEvent, tone};
use rtc::stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use rtc::stun::error_code::ErrorCodeAttribute;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE, METHOD_CREATE_PERMISSION, Message, MessageType,
    Setter, TransactionId,
};
use rtc::stun::textattrs::TextAttribute;
use rtc::turn::proto::PROTO_UDP;
use rtc::turn::proto::peeraddr::PeerAddress;
use rtc::turn::proto::relayaddr::RelayedAddress;
use rtc::turn::proto::reqtrans::RequestedTransport;
use tokio::net::UdpSocket;

async fn until_connected(session: &mut Session) -> tokio::sync::mpsc::UnboundedReceiver<SessionEvent> {
    let mut events = session.take_events().unwrap();
    let event = tokio::time::timeout(Duration::from_secs(15), events.recv()).await.expect("connected in time");
    assert_eq!(event, Some(SessionEvent::Connected));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_offering_only_relayed_candidates_flows_through_the_turn_server() {
    let server = TurnServer::bind(TurnConfig::default()).await.unwrap();
    let config = |who: &[u8]| MediaConfig { relays: vec![server.grant(who).unwrap()], relay_only: true, ..Default::default() };
    let (heard_by_a, heard_by_b) = (Capture::default(), Capture::default());
    let source = |hz| Box::new(WavSource::from_samples(tone::sine(hz, 10.0, 8000)));
    let (mut a, offer) = Session::offer(&config(b"alice"), source(440.0), Box::new(heard_by_a.clone())).await.unwrap();
    // Only relayed candidates, at the server's address: neither side learns the other's.
    let candidates: Vec<&str> = offer.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert!(!candidates.is_empty(), "{offer}");
    assert!(candidates.iter().all(|c| c.contains(" typ relay")), "{candidates:?}");
    let (mut b, answer) =
        Session::answer(&config(b"bob"), &offer, source(660.0), Box::new(heard_by_b.clone())).await.unwrap();
    a.accept_answer(&answer).await.unwrap();
    let _a = until_connected(&mut a).await;
    let _b = until_connected(&mut b).await;
    tokio::time::timeout(Duration::from_secs(20), async {
        while heard_by_a.len() < 72_000 || heard_by_b.len() < 72_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("1.5 s heard on both sides");
    let (fa, fb) = (tone::dominant_frequency(&heard_by_b.since(0)), tone::dominant_frequency(&heard_by_a.since(0)));
    assert!((fa.unwrap() - 440.0).abs() < 5.0, "B heard {fa:?}");
    assert!((fb.unwrap() - 660.0).abs() < 5.0, "A heard {fb:?}");
    let stats = server.stats();
    assert!(stats.allocations >= 2, "{stats:?}");
    // 1.5 s of Opus both ways at least, with DTLS and RTCP besides.
    assert!(stats.bytes_relayed > 10_000, "{stats:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A raw STUN client of the server.
struct Probe {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Probe {
    async fn new(server: SocketAddr) -> Probe {
        Probe { socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(), server }
    }

    async fn ask(&self, setters: Vec<Box<dyn Setter>>) -> Message {
        let mut msg = Message::new();
        msg.build(&setters).unwrap();
        self.socket.send_to(&msg.raw, self.server).await.unwrap();
        let mut buf = vec![0; 2048];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), self.socket.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let mut reply = Message::new();
        reply.raw = buf[..len].to_vec();
        reply.decode().unwrap();
        reply
    }

    /// Allocates with `grant`: the challenge, then the signed request.
    async fn allocate(&self, grant: &TurnGrant) -> Result<Message, u16> {
        let base = || -> Vec<Box<dyn Setter>> {
            vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
                Box::new(RequestedTransport { protocol: PROTO_UDP }),
            ]
        };
        let challenge = self.ask(base()).await;
        assert_eq!(code(&challenge), Some(401), "an unsigned allocation is challenged");
        let nonce = TextAttribute::get_from_as(&challenge, ATTR_NONCE).unwrap().text;
        let realm = TextAttribute::get_from_as(&challenge, ATTR_REALM).unwrap().text;
        let reply = self.ask(signed(base(), grant, &realm, &nonce)).await;
        match code(&reply) {
            None => Ok(reply),
            Some(code) => Err(code),
        }
    }
}

fn signed(mut setters: Vec<Box<dyn Setter>>, grant: &TurnGrant, realm: &str, nonce: &str) -> Vec<Box<dyn Setter>> {
    let provider = rtc::crypto::default_provider().unwrap();
    let key = MessageIntegrity::long_term_integrity_key(
        grant.username.clone(),
        realm.to_owned(),
        grant.password.clone(),
        provider.crypto(),
    )
    .unwrap();
    setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, grant.username.clone())));
    setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.to_owned())));
    setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.to_owned())));
    // The integrity attribute borrows the provider; leak it for a test's lifetime.
    let provider: &'static _ = Box::leak(Box::new(provider));
    setters.push(Box::new(MessageIntegrity::new_raw_integrity_with_provider(key, provider.crypto())));
    setters.push(Box::new(FINGERPRINT));
    setters
}

fn code(reply: &Message) -> Option<u16> {
    if reply.typ.class == CLASS_SUCCESS_RESPONSE {
        return None;
    }
    let mut error = ErrorCodeAttribute::default();
    error.get_from(reply).unwrap();
    Some(error.code.0)
}

#[tokio::test]
async fn the_server_refuses_wrong_passwords_forbidden_peers_and_allocations_over_quota() {
    let config = TurnConfig { max_allocations_per_peer: 2, ..Default::default() };
    let server = TurnServer::bind(config).await.unwrap();
    let grant = server.grant(b"mallory").unwrap();

    let forged = TurnGrant { password: "guessed".into(), ..grant.clone() };
    assert_eq!(Probe::new(server.addr()).await.allocate(&forged).await.unwrap_err(), 401, "a wrong password");
    let unknown = TurnGrant { username: "nobody".into(), ..grant.clone() };
    assert_eq!(Probe::new(server.addr()).await.allocate(&unknown).await.unwrap_err(), 401, "an unknown user");

    let probe = Probe::new(server.addr()).await;
    let allocated = probe.allocate(&grant).await.unwrap();
    let realm = TextAttribute::get_from_as(&allocated, ATTR_REALM).map(|t| t.text).unwrap_or_else(|_| "kith".into());
    // A permission for a multicast, unspecified or link-local address, or for the
    // server's own address other than a relayed port, is forbidden: the relay is no
    // way into anything but a peer's media port.
    let challenge = probe
        .ask(vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST)),
            Box::new(PeerAddress { ip: "127.0.0.1".parse().unwrap(), port: 9 }),
        ])
        .await;
    let nonce = TextAttribute::get_from_as(&challenge, ATTR_NONCE).unwrap().text;
    let server_itself = server.addr().to_string();
    let relayed = {
        let mut addr = RelayedAddress::default();
        addr.get_from(&allocated).unwrap();
        SocketAddr::new(addr.ip, addr.port).to_string()
    };
    let cases = [
        ("224.0.0.251:5353", Some(403)),
        ("0.0.0.0:9", Some(403)),
        // Link-local: cloud metadata services live there.
        ("169.254.169.254:80", Some(403)),
        (&server_itself, Some(403)),
        // Another port of the server's own address that no allocation relays on.
        ("127.0.0.1:9", Some(403)),
        // An allocation's relayed address: the other end of a call relayed here too.
        (&relayed, None),
    ];
    for (peer, want) in cases {
        let peer: SocketAddr = peer.parse().unwrap();
        let reply = probe
            .ask(signed(
                vec![
                    Box::new(TransactionId::new()),
                    Box::new(MessageType::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST)),
                    Box::new(PeerAddress { ip: peer.ip(), port: peer.port() }),
                ],
                &grant,
                &realm,
                &nonce,
            ))
            .await;
        assert_eq!(code(&reply), want, "a permission for {peer}");
    }

    // Two allocations per grant holder here; the third is over quota.
    Probe::new(server.addr()).await.allocate(&grant).await.unwrap();
    let third = Probe::new(server.addr()).await.allocate(&grant).await;
    assert_eq!(third.unwrap_err(), 486, "over the peer's allocation quota");
    assert_eq!(server.stats().allocations, 2);
    assert_eq!(server.stats().allocations_refused, 1);

    // Asking for grants again and again keeps two: the oldest stops working.
    let (first, _, _) = (server.grant(b"eve").unwrap(), server.grant(b"eve").unwrap(), server.grant(b"eve").unwrap());
    assert_eq!(Probe::new(server.addr()).await.allocate(&first).await.unwrap_err(), 401, "a replaced grant");
}
