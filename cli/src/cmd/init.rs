//! `kith init`: create the identity, the config and the database in the kith home.

use kith_p2p::identity::Identity;
use kith_p2p::keystore::{self, Protection};
use serde::Serialize;

use crate::args::{Global, InitArgs};
use crate::failure::{Code, Failure, Result};
use crate::{output, secret};

#[derive(Serialize)]
struct Created {
    peer_id: String,
    fingerprint: String,
    home: String,
    encrypted: bool,
}

pub(crate) fn run(global: &Global, args: InitArgs) -> Result {
    let home = super::home(global)?;
    let keystore_path = home.keystore_path();
    // Checked before asking for a passphrase so the user is not prompted for nothing;
    // keystore::create refuses again atomically if a file appears in between.
    if keystore_path.exists() {
        return Err(Failure::usage(format!(
            "an identity already exists at {}; refusing to overwrite it",
            keystore_path.display()
        )));
    }
    home.ensure().map_err(anyhow::Error::from)?;
    let passphrase = if args.no_passphrase { None } else { Some(secret::choose()?) };
    let protection = match &passphrase {
        Some(p) => Protection::Passphrase(p),
        None => Protection::Unencrypted,
    };

    let identity = Identity::generate();
    keystore::create(&keystore_path, &identity, protection).map_err(|e| match e {
        keystore::KeystoreError::AlreadyExists(path) => Failure::usage(format!(
            "an identity already exists at {}; refusing to overwrite it",
            path.display()
        )),
        other => Failure::new(Code::Error, other),
    })?;
    kith_p2p::data::init_home_files(&home, &identity.peer_id(), args.name.as_deref()).map_err(anyhow::Error::from)?;

    if passphrase.is_none() {
        eprintln!(
            "warning: the identity is stored UNENCRYPTED at {} (--no-passphrase)",
            keystore_path.display()
        );
    }
    let created = Created {
        peer_id: identity.peer_id().to_string(),
        fingerprint: identity.fingerprint().to_string(),
        home: home.root().display().to_string(),
        encrypted: passphrase.is_some(),
    };
    if args.output.json {
        return output::json(&created);
    }
    output::line(format!("created identity {}", created.peer_id))?;
    output::rows(&[("fingerprint", created.fingerprint), ("home", created.home)])
}
