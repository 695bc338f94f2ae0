//! One function per command. Each resolves the home, calls the libraries, prints.

mod audio_pipe;
mod calls;
mod changes;
mod chat;
mod completions;
mod config;
mod daemon;
mod demo;
mod files;
mod group;
mod id;
mod init;
mod keys;
mod knobs;
mod manpages;
mod net;
mod print;
mod profile;
mod relay;
mod search;
mod tui;

use kith_p2p::control::Request;
use kith_p2p::home::Home;

use crate::args::{Cli, Command, Global};
use crate::failure::{Failure, Result};

/// Run the parsed command line.
pub(crate) fn run(cli: Cli) -> Result {
    let g = &cli.global;
    let verbose = cli.verbose;
    let Some(command) = cli.command else {
        return tui::run(g, crate::args::DaemonArgs::default());
    };
    match command {
        Command::Tui(args) => tui::run(g, args),
        Command::Init(args) => init::run(g, args),
        Command::Id(out) => id::run(g, out.json),
        Command::Config(command) => config::run(g, command),
        Command::Daemon(args) => daemon::run(g, args),
        Command::Demo => demo::run(g, verbose),
        Command::Invite(args) => chat::invite(g, args),
        Command::Add(args) => chat::add(g, args),
        Command::Contacts(out) => chat::contacts(g, out.json),
        Command::Requests(out) => chat::requests(g, out.json),
        Command::Accept(args) => chat::contact_op(g, |contact| Request::Accept { contact }, args),
        Command::Reject(args) => chat::contact_op(g, |contact| Request::Reject { contact }, args),
        Command::Block(args) => chat::contact_op(g, |contact| Request::Block { contact }, args),
        Command::Unblock(args) => chat::contact_op(g, |contact| Request::Unblock { contact }, args),
        Command::Remove(args) => chat::contact_op(g, |contact| Request::Remove { contact }, args),
        Command::Read(args) => chat::contact_op(g, |contact| Request::Read { contact }, args),
        Command::Rename(args) => chat::rename(g, args),
        Command::Verify(args) => profile::verify(g, args),
        Command::Mute(args) => chat::mute(g, args),
        Command::Search(args) => search::search(g, args),
        Command::Unmute(args) => chat::unmute(g, args),
        Command::Send(args) => chat::send(g, args),
        Command::Edit(args) => changes::edit(g, args),
        Command::Delete(args) => changes::delete(g, args),
        Command::React(args) => changes::react(g, args),
        Command::SendFile(args) => files::send_file(g, args),
        Command::Files(args) => files::files(g, args),
        Command::Get(args) => files::get(g, args),
        Command::Call(args) => calls::place(g, args),
        Command::Answer(args) => calls::answer(g, args),
        Command::Hangup(args) => calls::hangup(g, args),
        Command::MuteCall(args) => calls::mute(g, args),
        Command::Calls(args) => calls::list(g, args),
        Command::History(args) => chat::history(g, args),
        Command::Message(args) => chat::message(g, args),
        Command::Unsent(out) => chat::unsent(g, out.json),
        Command::Inbox(out) => chat::inbox(g, out.json),
        Command::Follow => chat::follow(g),
        Command::Status(out) => chat::status(g, out.json),
        Command::Presence(out) => chat::presence(g, out.json),
        Command::Profile(command) => profile::run(g, command),
        Command::Keys(command) => keys::run(g, command),
        Command::Relay(command) => relay::run(g, command),
        Command::Group(command) => group::run(g, command),
        Command::Room(command) => calls::room(g, command),
        Command::Completions { shell } => completions::print(shell),
        Command::CompleteNames => completions::names(g),
        Command::Manpages { dir } => manpages::write(&dir),
    }
}

/// The kith home named by `--home`, `KITH_HOME` or the platform default.
pub(crate) fn home(global: &Global) -> Result<Home> {
    Home::resolve(global.home.clone()).map_err(|e| Failure::usage(format!("kith home: {e}")))
}

/// Unlock the identity in `home`, asking for the passphrase only if the file is encrypted.
pub(crate) fn load_identity(home: &Home) -> Result<kith_p2p::identity::Identity> {
    use kith_p2p::keystore::{self, KeystoreError};
    let path = home.keystore_path();
    let auth = |e: KeystoreError| match e {
        KeystoreError::NotFound(_) => Failure::usage(format!(
            "no identity in {}; run `kith init` first",
            home.root().display()
        )),
        KeystoreError::WrongPassphrase => Failure::usage("wrong passphrase"),
        KeystoreError::PassphraseRequired => Failure::usage("a passphrase is needed"),
        other => Failure::new(crate::failure::Code::Error, other),
    };
    let passphrase = if keystore::is_encrypted(&path).map_err(auth)? {
        Some(crate::secret::unlock()?)
    } else {
        None
    };
    keystore::load(&path, passphrase.as_deref()).map_err(auth)
}

/// The home's config.toml (defaults when absent); a bad file is a usage error.
pub(crate) fn load_config(home: &Home) -> Result<kith_p2p::config::Config> {
    kith_p2p::config::Config::load(&home.config_path()).map_err(Failure::usage)
}
