//! `kith id`: who am I — peer id, E2E key, fingerprint, invite.

use kith_p2p::config::Config;
use kith_p2p::invite::Invite;
use serde::Serialize;

use crate::args::Global;
use crate::failure::Result;
use crate::output;

#[derive(Serialize)]
struct IdView {
    peer_id: String,
    e2e_public: String,
    fingerprint: String,
    display_name: Option<String>,
    invite: String,
}

pub(crate) fn run(global: &Global, json: bool) -> Result {
    let home = super::home(global)?;
    let keystore = super::load_identity(&home)?;
    // The key in use is the key ring's once the node has started (or rotated).
    let identity = match kith_p2p::keyring::KeyRing::read(&home.key_ring_path(), &keystore) {
        Ok(Some(ring)) => ring.identity(&keystore),
        Ok(None) => keystore,
        Err(e) => return Err(crate::failure::Failure::usage(format!("the end-to-end key ring: {e}"))),
    };
    let config = super::load_config(&home)?;
    let invite = contact_card(&identity, &config);
    let view = IdView {
        peer_id: identity.peer_id().to_string(),
        e2e_public: bs58::encode(identity.e2e_public()).into_string(),
        fingerprint: identity.fingerprint().to_string(),
        display_name: config.display_name.clone(),
        invite: invite.to_uri(),
    };
    if json {
        return output::json(&view);
    }
    output::rows(&[
        ("peer id", view.peer_id),
        ("e2e key", view.e2e_public),
        ("fingerprint", view.fingerprint),
        ("name", view.display_name.unwrap_or_else(|| "-".into())),
        ("invite", view.invite),
    ])
}

/// A reusable invite without a one-time token: redeeming it sends a contact request.
fn contact_card(identity: &kith_p2p::identity::Identity, config: &Config) -> Invite {
    let public = identity.public();
    Invite {
        peer_id: public.peer_id,
        e2e_public: public.e2e_public,
        binding: public.binding,
        name: config.display_name.clone(),
        addrs: Vec::new(),
        relays: config.relays.clone(),
        token: None,
    }
}
