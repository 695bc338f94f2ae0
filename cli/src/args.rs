//! Command-line arguments (clap derive). Only parsing here; behaviour lives in `cmd`.

use std::path::PathBuf;

use clap::{ArgMatches, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Parses the command line, and says whether the command asked for `--json` (then
/// errors are printed as JSON too). A usage error is printed here (as JSON when the
/// arguments hold `--json`) and becomes the exit code to return; `--help` and
/// `--version` print as usual and exit 0.
pub(crate) fn parse() -> Result<(Cli, bool), std::process::ExitCode> {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            // clap's text up to its usage block, on one line: "the following required
            // arguments were not provided: <CONTACT> <TEXT>".
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            let error = serde_json::json!({"error": {"code": "usage", "message": message, "exit": 2}});
            eprintln!("{error}");
            return Err(std::process::ExitCode::from(2));
        }
        Err(e) => e.exit(),
    };
    let json = wants_json(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((cli, json))
}

/// Whether the innermost subcommand was given `--json`.
fn wants_json(matches: &ArgMatches) -> bool {
    let mut m = matches;
    loop {
        if let Ok(Some(true)) = m.try_get_one::<bool>("json") {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// kith: a terminal-first peer-to-peer messenger.
#[derive(Debug, Parser)]
#[command(name = "kith", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    /// More log output on stderr (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// What to do; with none, the terminal interface opens (as `kith tui`).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The kith home (identity, database, config, control socket).
    /// Default: $KITH_HOME, else the platform data dir (e.g. ~/.local/share/kith).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
}

/// The `kith` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new identity in the kith home.
    Init(InitArgs),
    /// Show this identity: peer id, E2E key, fingerprint and invite.
    Id(JsonFlag),
    /// Inspect the configuration (config.toml in the kith home).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the node: listen, deliver, serve the control socket (prints `ready ...`).
    Daemon(DaemonArgs),
    /// Try kith with nothing else running: your node, an echo bot and a group of two
    /// bots on 127.0.0.1. In a terminal it opens the interface; through a pipe, each
    /// stdin line goes to the echo bot and its answers are printed. Without --home
    /// everything is removed at the end; with --home DIR it is kept and reused.
    Demo,
    /// The terminal interface (also plain `kith`): uses the running daemon, or runs
    /// the node itself and serves the control socket while it is open.
    Tui(DaemonArgs),
    /// Create a one-time invite: whoever redeems it becomes a mutual contact.
    Invite(InviteArgs),
    /// Add a contact from an invite, or send a contact request to a peer id.
    Add(AddArgs),
    /// List contacts.
    Contacts(JsonFlag),
    /// List pending incoming contact requests.
    Requests(JsonFlag),
    /// Accept a contact request.
    Accept(ContactArg),
    /// Reject a contact request (deletes what the stranger sent).
    Reject(ContactArg),
    /// Block a peer: its traffic is dropped before storage.
    Block(ContactArg),
    /// Unblock a peer (it becomes an accepted contact).
    Unblock(ContactArg),
    /// Remove a contact and its conversation.
    Remove(ContactArg),
    /// Set a contact's local alias.
    Rename(RenameArgs),
    /// Show the safety number you and a contact both see (compare it in person or on
    /// a call, or scan its QR code), and mark the contact verified once it matches.
    Verify(VerifyArgs),
    /// Mute a conversation (contact or group): no bell, no notification; a mention of
    /// you in a group still notifies. Forever unless --for.
    Mute(MuteConversationArgs),
    /// Unmute a conversation.
    Unmute(ContactArg),
    /// Send a message (prints its id); --reply-to answers another.
    Send(SendArgs),
    /// Edit one of your messages for everyone who got it (every version is kept).
    Edit(EditArgs),
    /// Delete a message here, or one of yours for everyone (--for-everyone).
    Delete(DeleteArgs),
    /// React to a message with an emoji; again with the same emoji takes it back.
    React(ReactArgs),
    /// Send a file to a contact or group (prints the message id and the file id).
    SendFile(SendFileArgs),
    /// List files sent and received, with id, name, size, state and local path.
    Files(FilesArgs),
    /// Download a received file (any size) and optionally save a copy.
    Get(GetArgs),
    /// Call a contact (voice); stays until the call ends (Ctrl+C hangs up).
    Call(CallArgs),
    /// Answer a ringing call.
    Answer(AnswerArgs),
    /// Hang up a call, or decline one that rings.
    Hangup(HangupArgs),
    /// Mute your side of a call (the other side hears silence); --off unmutes.
    MuteCall(MuteArgs),
    /// Calls in progress and the call history: who, when, how long, missed.
    Calls(CallsArgs),
    /// Search every conversation's messages (words match by stem and prefix, any case
    /// and accents); best hits first, with the words found marked.
    Search(SearchArgs),
    /// Show a conversation, oldest first.
    History(HistoryArgs),
    /// Show one message: conversation, author, text, state.
    Message(MessageArgs),
    /// Your messages not sent yet (pending) or given up (failed), oldest first.
    Unsent(JsonFlag),
    /// Conversations with unread messages.
    Inbox(JsonFlag),
    /// Mark a conversation read (sends read receipts unless disabled).
    Read(ContactArg),
    /// Stream events as JSON lines until interrupted.
    Follow,
    /// Show the running node: addresses, peers, DHT, relays.
    Status(JsonFlag),
    /// Which contacts are online, and when the others were last seen (config `presence`).
    Presence(JsonFlag),
    /// Your profile (name, status line, picture), which every contact receives, and
    /// your contacts' profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Your end-to-end encryption key: show it, or rotate it (contacts are told; the
    /// old key still opens mail sent to it for 35 days, then it is wiped).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Pin relays that hold your mail while you are offline (two or more recommended).
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Group chats: create, manage members, list. Send, history, read and follow work
    /// on groups by name as on contacts.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Group voice rooms: join, leave, list, mute.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Print a shell completion script (contact and group names complete too).
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
    /// Write kith's man pages (kith.1, kith-send.1, …) into a directory.
    Manpages {
        /// Where to write them, e.g. ~/.local/share/man/man1.
        dir: PathBuf,
    },
    /// Print the names completion offers for CONTACT and GROUP arguments, one per
    /// line (used by the completion scripts).
    #[command(hide = true)]
    CompleteNames,
}

/// `--json`: machine-readable output.
#[derive(Debug, Args)]
pub(crate) struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `kith init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The display name others see.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Store the keys unencrypted (not recommended; anyone who can read the file can be you).
    #[arg(long)]
    pub(crate) no_passphrase: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// `kith config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Show the effective configuration (defaults filled in).
    Show(JsonFlag),
    /// Print where config.toml lives.
    Path,
    /// Print one setting's effective value (e.g. `display_name`, `relays`).
    Get(ConfigKeyArg),
    /// Change one setting in config.toml, validated like the file; takes effect when
    /// the node next starts. Lists (`listen`, `bootstrap`, `relays`) take their items
    /// separated by commas or spaces; an empty VALUE clears an optional setting.
    Set(ConfigSetArgs),
}

/// A setting's name plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct ConfigKeyArg {
    /// The setting, as in config.toml.
    pub(crate) key: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith config set`.
#[derive(Debug, Args)]
pub(crate) struct ConfigSetArgs {
    /// The setting, as in config.toml.
    pub(crate) key: String,
    /// Its new value.
    pub(crate) value: String,
}

/// `kith profile ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Change your profile and send it to every contact (those offline get it
    /// through relays); what you leave out stays as it is.
    Set(ProfileSetArgs),
    /// Show your profile, or a contact's as they last sent it.
    Show(ProfileShowArgs),
}

/// `kith keys ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// The key in use (its version and when its signature expires) and the keys
    /// rotated out that still open mail.
    Show(JsonFlag),
    /// Take a new key into use and tell every contact (through relays for those
    /// offline). Contacts see it as a key change; a contact who verified you is
    /// held until they verify you again.
    Rotate(JsonFlag),
}

/// Arguments of `kith profile set`.
#[derive(Debug, Args)]
pub(crate) struct ProfileSetArgs {
    /// Your name (an empty one removes it; contacts' aliases for you still win).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A status line, at most 140 characters (an empty one removes it).
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// A picture (PNG or JPEG) for your avatar: its middle square, made 128×128.
    #[arg(long, value_name = "FILE", conflicts_with = "no_avatar")]
    pub(crate) avatar: Option<PathBuf>,
    /// Remove your avatar.
    #[arg(long)]
    pub(crate) no_avatar: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith profile show`.
#[derive(Debug, Args)]
pub(crate) struct ProfileShowArgs {
    /// A contact (alias, peer id, or a unique prefix of either); yours when absent.
    pub(crate) contact: Option<String>,
    /// Also write the avatar picture to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) avatar_out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// `kith relay ...`
#[derive(Debug, Subcommand)]
pub(crate) enum RelayCommand {
    /// Pin a relay: `/ip4/.../tcp/.../p2p/<relay peer id>` (from `kith-relay id`).
    Add(RelayArg),
    /// Unpin a relay.
    Remove(RelayArg),
    /// List pinned relays.
    List(JsonFlag),
}

/// `kith group ...`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group with you as owner (its log lives on your pinned relays).
    Create(GroupNameArgs),
    /// Add a contact to a group (owner and admins).
    Add(GroupMemberArgs),
    /// Remove a member (owner and admins); everyone's keys rotate.
    Remove(GroupMemberArgs),
    /// Leave a group.
    Leave(GroupArg),
    /// Make a member an admin.
    Promote(GroupMemberArgs),
    /// Make an admin a plain member.
    Demote(GroupMemberArgs),
    /// List a group's members and their roles.
    Members(GroupArg),
    /// List your groups.
    List(JsonFlag),
    /// Rename a group (owner and admins).
    Rename(GroupRenameArgs),
    /// List invitations: groups someone who is not your contact added you to.
    Invites(JsonFlag),
    /// Join a group you were invited to.
    Accept(GroupArg),
    /// Turn an invitation down: the group is forgotten and does not come back.
    Decline(GroupArg),
}

/// A new group's name plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct GroupNameArgs {
    /// The group's name (1 to 64 characters).
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// A group plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct GroupArg {
    /// Group name, id, or a unique prefix of either.
    pub(crate) group: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// A group and a member (or contact) plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct GroupMemberArgs {
    /// Group name, id, or a unique prefix of either.
    pub(crate) group: String,
    /// Contact alias, peer id, or a unique prefix of either.
    pub(crate) member: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// A group and its new name plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct GroupRenameArgs {
    /// Group name, id, or a unique prefix of either.
    pub(crate) group: String,
    /// The new name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// A relay address plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct RelayArg {
    /// The relay's multiaddr, ending in /p2p/<relay peer id>.
    pub(crate) multiaddr: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith daemon` (and of the node `kith tui` runs when no daemon does).
#[derive(Debug, Default, Args)]
pub(crate) struct DaemonArgs {
    /// Listen on this multiaddr (repeatable). Default: `listen` from config.toml.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<String>,
    /// Join the DHT through this peer (repeatable; with /p2p/<peer id>). Added to config's.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long)]
    pub(crate) no_mdns: bool,
}

/// A contact argument plus `--json`.
#[derive(Debug, Args)]
pub(crate) struct ContactArg {
    /// Alias, peer id, or a unique prefix of either.
    pub(crate) contact: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// How far `kith send --wait` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WaitFor {
    /// Accepted by the peer or a relay.
    Sent,
    /// Stored by the recipient's node.
    Delivered,
    /// Read by the recipient (if they send read receipts).
    Read,
}

impl WaitFor {
    /// The message state it waits for.
    pub(crate) fn state(self) -> kith_p2p::kith_storage::MessageState {
        use kith_p2p::kith_storage::MessageState;
        match self {
            WaitFor::Sent => MessageState::Sent,
            WaitFor::Delivered => MessageState::Delivered,
            WaitFor::Read => MessageState::Read,
        }
    }
}

/// `--wait` and `--timeout` of the commands that send a message.
#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// Wait until the message is sent, delivered or read (delivered and read: 1:1
    /// conversations only).
    #[arg(long, value_enum)]
    pub(crate) wait: Option<WaitFor>,
    /// Give up waiting after this many seconds (exit 1, the message id still printed;
    /// the message stays queued).
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
}

/// Arguments of `kith send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Alias, peer id, or a unique prefix of either.
    pub(crate) contact: String,
    /// The message; `-` reads it from stdin (one trailing newline dropped).
    pub(crate) text: String,
    /// Answer this message (its id, from `history` or `search`): shown quoted above the text.
    #[arg(long, value_name = "MSG_ID")]
    pub(crate) reply_to: Option<String>,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith edit`.
#[derive(Debug, Args)]
pub(crate) struct EditArgs {
    /// One of your messages (its id).
    pub(crate) id: String,
    /// The new text; `-` reads it from stdin (one trailing newline dropped).
    pub(crate) text: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The message (its id).
    pub(crate) id: String,
    /// Delete it for everyone who got it (only your own messages; needs the node).
    /// Without it, the message is hidden here only.
    #[arg(long)]
    pub(crate) for_everyone: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith react`.
#[derive(Debug, Args)]
pub(crate) struct ReactArgs {
    /// The message (its id).
    pub(crate) id: String,
    /// One emoji; reacting again with the same one takes it back.
    pub(crate) emoji: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith send-file`.
#[derive(Debug, Args)]
pub(crate) struct SendFileArgs {
    /// A contact or group: alias, name, peer id, or a unique prefix.
    pub(crate) target: String,
    /// The file to send.
    pub(crate) path: PathBuf,
    /// Text sent with the file.
    #[arg(long)]
    pub(crate) caption: Option<String>,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// `kith room ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoomCommand {
    /// Join a group's voice room and stay until Ctrl+C (or --duration); prints who
    /// comes and goes on stderr.
    Join(RoomJoinArgs),
    /// Leave a group's voice room (one a `kith room join` elsewhere keeps open).
    Leave(RoomGroupArg),
    /// The voice rooms you are in, who is in each and who speaks (only GROUP's when given).
    List(RoomListArgs),
    /// Mute your side in a group's voice room; --off unmutes.
    Mute(RoomMuteArgs),
}

/// Arguments of `kith room mute`.
#[derive(Debug, Args)]
pub(crate) struct RoomMuteArgs {
    /// The group: name, id, or a unique prefix.
    pub(crate) group: String,
    /// Unmute instead.
    #[arg(long)]
    pub(crate) off: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith room join`.
#[derive(Debug, Args)]
pub(crate) struct RoomJoinArgs {
    /// The group: name, id, or a unique prefix.
    pub(crate) group: String,
    #[command(flatten)]
    pub(crate) audio: CallAudio,
    /// Leave after this many seconds.
    #[arg(long, value_name = "S")]
    pub(crate) duration: Option<f64>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// A group's voice room.
#[derive(Debug, Args)]
pub(crate) struct RoomGroupArg {
    /// The group: name, id, or a unique prefix.
    pub(crate) group: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith room list`.
#[derive(Debug, Args)]
pub(crate) struct RoomListArgs {
    /// Only this group's room.
    pub(crate) group: Option<String>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// A call's audio: files or pipes instead of sound devices.
#[derive(Debug, Args)]
pub(crate) struct CallAudio {
    /// Send this 48 kHz 16-bit WAV file (mono or stereo) instead of the microphone;
    /// `-` reads a WAV stream from standard input, as fast as the call takes it.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) input: Option<PathBuf>,
    /// Record what the other side sends into this WAV file (48 kHz mono) instead of
    /// playing it; `-` writes a WAV stream to standard output (and everything else to
    /// stderr).
    #[arg(long, value_name = "FILE|-")]
    pub(crate) output: Option<PathBuf>,
}

/// Arguments of `kith call`.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The contact: alias, name, peer id, or a unique prefix.
    pub(crate) contact: String,
    #[command(flatten)]
    pub(crate) audio: CallAudio,
    /// Hang up after this many seconds of media.
    #[arg(long, value_name = "S")]
    pub(crate) duration: Option<f64>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith answer`.
#[derive(Debug, Args)]
pub(crate) struct AnswerArgs {
    /// The call id (or a unique prefix); the only ringing call if left out.
    pub(crate) call: Option<String>,
    #[command(flatten)]
    pub(crate) audio: CallAudio,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith hangup`.
#[derive(Debug, Args)]
pub(crate) struct HangupArgs {
    /// The call id (or a unique prefix); the only call if left out.
    pub(crate) call: Option<String>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith mute-call`.
#[derive(Debug, Args)]
pub(crate) struct MuteArgs {
    /// The call id (or a unique prefix); the only call with media if left out.
    pub(crate) call: Option<String>,
    /// Unmute instead.
    #[arg(long)]
    pub(crate) off: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith calls`.
#[derive(Debug, Args)]
pub(crate) struct CallsArgs {
    /// Show at most this many ended calls (the newest).
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith files`.
#[derive(Debug, Args)]
pub(crate) struct FilesArgs {
    /// Only the files of this contact's or group's conversation.
    pub(crate) target: Option<String>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The file id (from `kith files` or `kith history`), or a unique prefix of at
    /// least 8 characters.
    pub(crate) id: String,
    /// Also save the file here.
    #[arg(long, value_name = "PATH")]
    pub(crate) out: Option<PathBuf>,
    /// Wait until the file is downloaded and saved (progress on stderr when it is a
    /// terminal).
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait, give up waiting after this many seconds (exit 1, code `timeout`;
    /// the download goes on in the node).
    #[arg(long, value_name = "S", requires = "wait")]
    pub(crate) timeout: Option<u64>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith message`.
#[derive(Debug, Args)]
pub(crate) struct MessageArgs {
    /// The message id (as `send` printed it).
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// Alias, peer id, or a unique prefix of either.
    pub(crate) contact: String,
    /// How many messages (the newest ones before --before).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
    /// Page backwards: only messages before this message id.
    #[arg(long, value_name = "MSG_ID")]
    pub(crate) before: Option<String>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// A `kith:` invite, or a bare peer id (sends a contact request).
    pub(crate) target: String,
    /// A local alias for the contact.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// How long to wait, in seconds, for the invite's maker to accept (0: do not wait).
    #[arg(long, default_value_t = 5)]
    pub(crate) timeout: u64,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith rename`.
#[derive(Debug, Args)]
pub(crate) struct RenameArgs {
    /// Alias, peer id, or a unique prefix of either.
    pub(crate) contact: String,
    /// The new alias (empty clears it).
    pub(crate) alias: String,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Alias, peer id, or a unique prefix of either.
    pub(crate) contact: String,
    /// Mark the contact verified (the safety numbers matched).
    #[arg(long, conflicts_with = "unmark")]
    pub(crate) mark: bool,
    /// Mark the contact not verified.
    #[arg(long)]
    pub(crate) unmark: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith mute`.
#[derive(Debug, Args)]
pub(crate) struct MuteConversationArgs {
    /// A contact or group: alias, name, id, or a unique prefix.
    pub(crate) contact: String,
    /// How long, e.g. `30m`, `8h`, `2d`, `1h30m` (units s, m, h, d, w); forever if left out.
    #[arg(long = "for", value_name = "DURATION", value_parser = duration)]
    pub(crate) duration: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    kith_p2p::ops::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 30m, 8h or 2d"))
}

/// Arguments of `kith search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The words to look for (every one must match).
    #[arg(required_unless_present = "rebuild")]
    pub(crate) query: Vec<String>,
    /// Only in this conversation: a contact or group (alias, name, id, or a unique prefix).
    #[arg(long = "in", value_name = "TARGET")]
    pub(crate) within: Option<String>,
    /// Only messages written by this contact, or by you with `me`.
    #[arg(long, value_name = "CONTACT")]
    pub(crate) from: Option<String>,
    /// At most this many hits (1 to 1000).
    #[arg(long, default_value_t = kith_p2p::search::DEFAULT_LIMIT)]
    pub(crate) limit: usize,
    /// Build the search index again from every stored message (no query needed).
    #[arg(long, conflicts_with_all = ["query", "within", "from"])]
    pub(crate) rebuild: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// Arguments of `kith invite`.
#[derive(Debug, Args)]
pub(crate) struct InviteArgs {
    /// Also print the invite as a QR code.
    #[arg(long)]
    pub(crate) qr: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}
