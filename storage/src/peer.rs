//! Peer ids and addresses as stored: typed in memory (`PeerId`, `Multiaddr`), text
//! on disk (base58 and the multiaddr's text form), the layout databases already have.

use std::cell::RefCell;

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Peers whose text [`text`] remembers, per thread.
const TEXTS_REMEMBERED: usize = 16;

thread_local! {
    /// The base58 texts of the peers last turned into text on this thread, newest
    /// last.
    static TEXTS: RefCell<Vec<(PeerId, String)>> = const { RefCell::new(Vec::new()) };
}

/// `peer`'s base58 text, the same as `peer.to_string()`. Base58 costs a division
/// loop over the whole id (~1.5 µs), and a busy node writes the same few ids (its
/// own, as every message's author; the contact it talks to) into every message,
/// entry and event, so the last [`TEXTS_REMEMBERED`] are remembered per thread.
pub fn text(peer: &PeerId) -> String {
    TEXTS
        .try_with(|texts| {
            let mut texts = texts.borrow_mut();
            if let Some(at) = texts.iter().rposition(|(p, _)| p == peer) {
                // Used again: it moves to the back, so ids in steady use are kept.
                let known = texts.remove(at);
                let text = known.1.clone();
                texts.push(known);
                return text;
            }
            let made = peer.to_base58();
            if texts.len() >= TEXTS_REMEMBERED {
                texts.remove(0);
            }
            texts.push((*peer, made.clone()));
            made
        })
        // Only while the thread's locals are being torn down.
        .unwrap_or_else(|_| peer.to_base58())
}

/// Serde for a [`PeerId`] stored as its base58 text; text that is not a peer id fails
/// to decode (the entry is corrupt).
pub(crate) mod peer_text {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        super::text(peer).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("peer id {text:?}: {e}")))
    }
}

/// Serde for addresses stored as text. Reading is lenient: an address this build
/// cannot parse (written by a newer one, say) is skipped with a warning rather than
/// making the whole entry unreadable.
pub(crate) mod addr_texts {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(ToString::to_string))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        Ok(texts
            .into_iter()
            .filter_map(|text| match text.parse() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    tracing::warn!(address = %text, error = %e, "skipping a stored address this build cannot read");
                    None
                }
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_peers_text_is_its_base58_however_many_peers_come_and_go() {
        let peer = |n: u8| libp2p_identity::PeerId::from_bytes(&[&[0x12, 0x20][..], &[n; 32]].concat()).unwrap();
        let peers: Vec<_> = (0..40).map(peer).collect();
        for round in 0..3 {
            for (i, peer) in peers.iter().enumerate() {
                // Revisit the first few often, so both remembered and evicted texts are read.
                for p in [peer, &peers[i % 3]] {
                    assert_eq!(super::text(p), p.to_base58(), "round {round}, peer {i}");
                }
            }
        }
    }

    use serde::{Deserialize, Serialize};

    use crate::codec::{decode, encode};
    use crate::{Contact, ContactState};

    /// A contact as databases written before typed ids hold it: all text.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct TextContact {
        peer_id: String,
        alias: Option<String>,
        display_name: Option<String>,
        state: ContactState,
        e2e_public: Option<[u8; 32]>,
        binding: Option<Vec<u8>>,
        addrs: Vec<String>,
        relays: Vec<String>,
        added_at_ms: u64,
        updated_at_ms: u64,
    }

    fn text(peer_id: &str, addrs: &[&str]) -> TextContact {
        TextContact {
            peer_id: peer_id.into(),
            alias: None,
            display_name: None,
            state: ContactState::Accepted,
            e2e_public: None,
            binding: None,
            addrs: addrs.iter().map(|a| (*a).to_owned()).collect(),
            relays: Vec::new(),
            added_at_ms: 1,
            updated_at_ms: 2,
        }
    }

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn typed_contacts_keep_the_text_layout_databases_have() {
        let old = text(PEER, &["/ip4/127.0.0.1/tcp/4001", "/dns4/relay.example/tcp/443"]);
        let contact: Contact = decode("contacts", &encode(&old).unwrap()).unwrap();
        assert_eq!(contact.peer_id.to_base58(), PEER);
        assert_eq!(contact.addrs.len(), 2);
        let back: TextContact = decode("contacts", &encode(&contact).unwrap()).unwrap();
        assert_eq!(back, old);
    }

    #[test]
    fn a_bad_peer_id_is_corrupt_but_a_bad_address_is_only_skipped() {
        let bad_peer = encode(&text("not a peer id", &[])).unwrap();
        assert!(decode::<Contact>("contacts", &bad_peer).is_err());
        let bad_addr = encode(&text(PEER, &["/ip4/10.0.0.1/tcp/1", "/unknown-protocol/7"])).unwrap();
        let contact: Contact = decode("contacts", &bad_addr).unwrap();
        assert_eq!(contact.addrs, ["/ip4/10.0.0.1/tcp/1".parse::<multiaddr::Multiaddr>().unwrap()]);
    }
}
