//! Slash commands typed into the input box (`/add`, `/invite`, ...).
//!
//! [`parse`] turns a line that starts with `/` into a [`Command`] or a
//! [`CommandError`] with a message fit for the status line. Executing a command is
//! the state machine's business ([`crate::app`]).

/// A parsed slash command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `/add <INVITE|PEER_ID> [alias]`: redeem an invite or send a contact request.
    Add {
        /// The invite URI or peer id.
        target: String,
        /// A local name for the new contact.
        alias: Option<String>,
    },
    /// `/invite`: show our invite and its QR code.
    Invite,
    /// `/accept [contact]`: accept a contact request (default: the open one).
    Accept(Option<String>),
    /// `/reject [contact]`: reject a contact request (default: the open one).
    Reject(Option<String>),
    /// `/block [contact]`: block a contact (default: the open one).
    Block(Option<String>),
    /// `/unblock <contact>`: unblock a blocked contact (blocked ones are not listed,
    /// so it must be named).
    Unblock(String),
    /// `/remove [contact]`: remove a contact and its conversation (default: the open one).
    Remove(Option<String>),
    /// `/rename <name>`: give the open contact a local name.
    Rename(String),
    /// `/status`: the node's status (peer id, addresses, peers, queues) in the log.
    Status,
    /// `/log`: show the log of notices and errors.
    Log,
    /// `/read`: mark the open conversation as read.
    Read,
    /// `/help`: show the key bindings and commands.
    Help,
    /// `/search [words]`: the search overlay (also Ctrl+F), searching for the words
    /// at once if given.
    Search(Option<String>),
    /// `/quit`: leave the interface; the node keeps running, unless the interface
    /// runs it itself ([`Config::runs_node`](crate::Config::runs_node)).
    Quit,
    /// `/group ...`: create a group, or manage the open one.
    Group(GroupCommand),
    /// `/call [contact]`: call a contact (default: the open conversation's).
    Call(Option<String>),
    /// `/answer`: answer the ringing call.
    Answer,
    /// `/hangup`: hang up the call in progress, or decline the ringing one.
    Hangup,
    /// `/mute`: mute our side of the call, or unmute it (with no call, our side in
    /// the voice room the room bar shows).
    Mute,
    /// `/mute-chat [DURATION]`: mute the open conversation (no bell, no notification;
    /// a mention of us in a group still notifies), forever or for DURATION (`30m`,
    /// `8h`, `2d`).
    MuteChat(Option<String>),
    /// `/unmute-chat`: unmute the open conversation.
    UnmuteChat,
    /// `/room [join|leave|mute]`: the open group's voice room.
    Room(RoomCommand),
    /// `/reply [text]`: answer the selected message (else the newest one in view):
    /// the input shows what it answers and Enter sends the reply; with `text`, that
    /// is sent as the reply at once.
    Reply(Option<String>),
    /// `/edit [text]`: put the text of our selected message (else our newest one in
    /// view) into the input to be edited, Enter sending the edit; with `text`, that
    /// replaces it at once.
    Edit(Option<String>),
    /// `/delete`: delete the selected message (else the newest one in view) for us
    /// only.
    Delete,
    /// `/delete-all`: delete our selected message (else our newest one in view) for
    /// everyone who got it, once confirmed.
    DeleteAll,
    /// `/react <emoji>`: react to the selected message (else the newest one in
    /// view), or take that reaction back.
    React(String),
    /// `/profile [contact]`: show our profile, or a contact's.
    Profile(Option<String>),
    /// `/name`, `/status TEXT`, `/avatar`: change our profile.
    SetProfile(ProfileCommand),
    /// `/verify <contact> [mark | unmark]`: show a contact's safety number and its QR
    /// code, or mark the contact verified (or not) once the numbers were compared.
    Verify {
        /// The contact, as typed.
        contact: String,
        /// `Some(true)`: mark verified, `Some(false)`: unmark; `None`: only show.
        mark: Option<bool>,
    },
    /// `/file <path> [caption]`: send a file to the open conversation. The path is
    /// as typed (relative, `~/`, or in quotes when it has spaces); the runtime
    /// makes it absolute ([`absolute_path`]).
    File {
        /// The path as typed, without its quotes.
        path: String,
        /// Text sent with the file.
        caption: Option<String>,
    },
}

/// The `/group` subcommands. All but `create` act on the open group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupCommand {
    /// `/group create <name>`: create a group with us as its only member.
    Create(String),
    /// `/group add <contact>`: add a contact to the open group.
    Add(String),
    /// `/group remove <member>`: remove a member (peer id or name) from the open group.
    Remove(String),
    /// `/group leave`: leave the open group.
    Leave,
    /// `/group members`: list the open group's members.
    Members,
}

/// A change of our profile. `-` as the argument clears (bare `/status` is the
/// node's status, so an empty argument cannot be the way to clear).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileCommand {
    /// `/name <name>`: the name our contacts see (empty: none).
    Name(String),
    /// `/status <text>`: our status line (empty: none).
    Status(String),
    /// `/avatar <path>`: our picture from a file, the path as typed (`None`: drop it).
    Avatar(Option<String>),
}

/// The `/room` subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomCommand {
    /// `/room`: join the open group's voice room, or leave it when in.
    Toggle,
    /// `/room join`: join the open group's voice room.
    Join,
    /// `/room leave`: leave the open group's voice room, else the one the room bar shows.
    Leave,
    /// `/room mute`: mute our side in the room the room bar shows, or unmute it.
    Mute,
}

/// Why a slash command could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No command has this name.
    #[error("unknown command /{0} (type /help for the list)")]
    Unknown(String),
    /// A required argument is missing.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// One line per command, for the help overlay, except `/quit` and `//text`, whose
/// lines [`help`] adds.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/add <invite|peer-id> [alias]", "add a contact by invite, or send a request by peer id"),
    ("/invite", "show your invite link and QR code"),
    ("/accept [contact]", "accept a contact request or the open group invitation"),
    ("/reject [contact]", "reject a contact request or decline the open group invitation"),
    ("/block [contact]", "block a contact"),
    ("/unblock <contact>", "unblock a blocked contact"),
    ("/remove [contact]", "remove a contact and your conversation with them"),
    ("/rename <name>", "give the open contact a name of your choice"),
    ("/status", "the node's status (peer id, addresses, peers, queues), in the log"),
    ("/log", "the log of notices and errors (also F2)"),
    ("/read", "mark the conversation as read"),
    ("/search [words]", "search your messages (also Ctrl+F): Enter opens the one chosen in its conversation"),
    ("/file <path> [caption]", "send a file (Tab completes the path; \"quotes\" around one with spaces)"),
    ("/reply [text]", "reply to the selected message (Ctrl+Up selects; none: the newest in view)"),
    ("/edit [text]", "edit your selected message (none: your newest in view); Enter saves, Esc cancels"),
    ("/delete", "delete the selected message (none: the newest in view) for you only"),
    ("/delete-all", "delete your selected message (none: your newest in view) for everyone; asks first"),
    ("/react <emoji>", "react to the selected message (none: the newest in view); again: take it back"),
    ("/call [contact]", "call the open contact (or the one named) by voice"),
    ("/answer", "answer the incoming call (also Enter on the call window)"),
    ("/hangup", "hang up the call, or decline the incoming one (also Esc on the call window)"),
    ("/mute", "mute your side of the call (no call: of the voice room); again: unmute"),
    ("/room", "join the open group's voice room; again: leave it"),
    ("/room join | leave | mute", "join, leave, or mute (again: unmute) the group's voice room"),
    ("/group create <name>", "create a group"),
    ("/group add <contact>", "add a contact to the open group"),
    ("/group remove <member>", "remove a member from the open group"),
    ("/group leave", "leave the open group"),
    ("/group members", "list the open group's members"),
    ("/profile [contact]", "your profile, or a contact's: name, status, picture, presence (Esc closes)"),
    ("/name <name> | -", "set the name your contacts see (- clears it; their own names for you win)"),
    ("/status <text> | -", "set your status line, shown to your contacts (- clears it)"),
    ("/avatar <path> | -", "set your picture from a PNG or JPEG (Tab completes the path; - removes it)"),
    ("/verify <contact>", "their safety number and its QR code, to compare with theirs (Esc closes)"),
    ("/verify <contact> mark | unmark", "mark the contact verified once the numbers match (or take it back)"),
    ("/help", "this help"),
];

/// What quitting does, as the help says it (for `/quit` and its keys): the node keeps
/// running, unless the interface runs it itself (`runs_node`: no daemon ran when it
/// started), when quitting stops it.
pub fn quit_help(runs_node: bool) -> &'static str {
    if runs_node {
        "quit and stop the node (it runs in here)"
    } else {
        "quit (the node keeps running)"
    }
}

/// Every command's help line, in order, for an interface that does or does not run
/// the node itself (see [`quit_help`]).
pub fn help(runs_node: bool) -> Vec<(&'static str, &'static str)> {
    let mut lines = COMMANDS.to_vec();
    lines.push(("/quit", quit_help(runs_node)));
    lines.push(("//text", "send a message that starts with /"));
    lines
}

/// Whether `text` typed into the input is a command: it starts with `/`, and not
/// with `//` (which sends a message starting with `/`).
pub fn is_command(text: &str) -> bool {
    text.starts_with('/') && !text.starts_with("//")
}

/// Parse `line`, which starts with `/`.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line.trim();
    let body = line.strip_prefix('/').unwrap_or(line);
    let mut words = body.split_whitespace();
    let name = words.next().unwrap_or_default().to_lowercase();
    let rest: Vec<&str> = words.collect();
    let optional = |rest: &[&str]| (!rest.is_empty()).then(|| rest.join(" "));
    match name.as_str() {
        "add" => {
            // An invite copied from a terminal may come broken over lines (with the
            // rows' trailing spaces): the lines are one invite.
            let joined: String = body.lines().map(str::trim).collect();
            let rest: Vec<&str> = joined.split_whitespace().skip(1).collect();
            let Some((target, alias)) = rest.split_first() else {
                return Err(CommandError::Usage("/add <invite|peer-id> [alias]"));
            };
            Ok(Command::Add { target: (*target).to_owned(), alias: optional(alias) })
        }
        "invite" => Ok(Command::Invite),
        "accept" => Ok(Command::Accept(optional(&rest))),
        "reject" => Ok(Command::Reject(optional(&rest))),
        "block" => Ok(Command::Block(optional(&rest))),
        "unblock" => optional(&rest).map(Command::Unblock).ok_or(CommandError::Usage("/unblock <contact>")),
        "remove" => Ok(Command::Remove(optional(&rest))),
        "rename" | "alias" => optional(&rest).map(Command::Rename).ok_or(CommandError::Usage("/rename <name>")),
        "status" => match text_after(body) {
            None => Ok(Command::Status),
            Some(text) => Ok(Command::SetProfile(ProfileCommand::Status(cleared(text)))),
        },
        "profile" | "whois" => Ok(Command::Profile(optional(&rest))),
        "verify" => parse_verify(&rest),
        "name" | "nick" => text_after(body)
            .map(|name| Command::SetProfile(ProfileCommand::Name(cleared(name))))
            .ok_or(CommandError::Usage("/name <name> | - (clears it)")),
        "avatar" => match text_after(body) {
            None => Err(CommandError::Usage(AVATAR_USAGE)),
            Some(dash) if dash == "-" => Ok(Command::SetProfile(ProfileCommand::Avatar(None))),
            Some(path) => Ok(Command::SetProfile(ProfileCommand::Avatar(Some(unquoted(&path).to_owned())))),
        },
        "log" => Ok(Command::Log),
        "read" => Ok(Command::Read),
        "help" | "h" | "?" => Ok(Command::Help),
        "search" | "find" => Ok(Command::Search(optional(&rest))),
        "quit" | "q" | "exit" => Ok(Command::Quit),
        "group" | "groups" => parse_group(&rest).map(Command::Group),
        "file" | "send-file" => parse_file(body),
        "reply" => Ok(Command::Reply(text_after(body))),
        "edit" => Ok(Command::Edit(text_after(body))),
        "delete" => match rest.as_slice() {
            [] => Ok(Command::Delete),
            _ => Err(CommandError::Usage("/delete (acts on the selected message)")),
        },
        "delete-all" | "unsend" => match rest.as_slice() {
            [] => Ok(Command::DeleteAll),
            _ => Err(CommandError::Usage("/delete-all (acts on your selected message)")),
        },
        "react" => match rest.as_slice() {
            [emoji] => Ok(Command::React((*emoji).to_owned())),
            _ => Err(CommandError::Usage("/react <emoji>")),
        },
        "call" => Ok(Command::Call(optional(&rest))),
        "answer" | "pickup" => Ok(Command::Answer),
        "hangup" | "decline" => Ok(Command::Hangup),
        "mute" => Ok(Command::Mute),
        "mute-chat" => match rest.as_slice() {
            [] => Ok(Command::MuteChat(None)),
            [duration] => Ok(Command::MuteChat(Some((*duration).to_owned()))),
            _ => Err(CommandError::Usage("/mute-chat [30m | 8h | 2d]")),
        },
        "unmute-chat" => Ok(Command::UnmuteChat),
        "room" | "voice" => parse_room(&rest).map(Command::Room),
        "" => Err(CommandError::Unknown(String::new())),
        other => Err(CommandError::Unknown(other.to_owned())),
    }
}

/// Every command's name, for Tab completion (aliases left out).
pub const NAMES: &[&str] = &[
    "accept", "add", "answer", "avatar", "block", "call", "delete", "delete-all", "edit", "file", "group", "hangup",
    "help", "invite", "log", "mute", "mute-chat", "name", "profile", "quit", "react", "read", "reject", "remove",
    "rename", "reply", "room", "search", "status", "unblock", "unmute-chat", "verify",
];

/// The `/group` subcommands, for Tab completion.
pub const GROUP_NAMES: &[&str] = &["add", "create", "leave", "members", "remove"];

/// The `/room` subcommands, for Tab completion.
pub const ROOM_NAMES: &[&str] = &["join", "leave", "mute"];

/// The usage line of `/room`.
const ROOM_USAGE: &str = "/room [join | leave | mute]";

/// The usage line of `/group`, shown when a subcommand or its argument is missing.
const GROUP_USAGE: &str = "/group create <name> | add <contact> | remove <member> | leave | members";

/// The usage line of `/verify`.
const VERIFY_USAGE: &str = "/verify <contact> [mark | unmark]";

/// Parse the words after `/verify`: the contact (a name may have spaces), then
/// `mark` or `unmark` as the last word if wanted. A lone word is always the
/// contact, so a contact called Mark can be shown.
fn parse_verify(rest: &[&str]) -> Result<Command, CommandError> {
    let (mark, name) = match rest.split_last() {
        None => return Err(CommandError::Usage(VERIFY_USAGE)),
        Some((last, name)) if !name.is_empty() => match last.to_lowercase().as_str() {
            "mark" => (Some(true), name),
            "unmark" => (Some(false), name),
            _ => (None, rest),
        },
        Some(_) => (None, rest),
    };
    Ok(Command::Verify { contact: name.join(" "), mark })
}

/// The usage line of `/avatar`.
const AVATAR_USAGE: &str = "/avatar <path> | - (removes it)";

/// A profile field as typed: `-` alone means none (the node clears on empty).
fn cleared(text: String) -> String {
    if text == "-" { String::new() } else { text }
}

/// A path without the quotes around it (`"My Photos/me.png"`), if it has them.
fn unquoted(path: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = path.strip_prefix(quote).and_then(|p| p.strip_suffix(quote)) {
            return inner;
        }
    }
    path
}

/// The usage line of `/file`.
const FILE_USAGE: &str = "/file <path> [caption]";

/// Parse `/file`'s arguments from the command's `body` (after the `/`): a path,
/// whole in `"…"` or `'…'` if it has spaces, else up to the first space; then the
/// caption, kept as typed (new lines included).
fn parse_file(body: &str) -> Result<Command, CommandError> {
    let rest = after_name(body);
    let (path, caption) = match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => match rest[1..].split_once(quote) {
            Some((path, caption)) => (path, caption),
            None => return Err(CommandError::Usage(FILE_USAGE)),
        },
        _ => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
    };
    if path.is_empty() {
        return Err(CommandError::Usage(FILE_USAGE));
    }
    let caption = caption.trim();
    Ok(Command::File { path: path.to_owned(), caption: (!caption.is_empty()).then(|| caption.to_owned()) })
}

/// What follows the command's name in its `body` (after the `/`), as typed (new
/// lines included), without the spaces around it.
fn after_name(body: &str) -> &str {
    body.trim_start().split_once(char::is_whitespace).map_or("", |(_, rest)| rest).trim_start()
}

/// The text after the command's name, if any (`/reply text`, `/edit text`).
fn text_after(body: &str) -> Option<String> {
    let text = after_name(body).trim_end();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `path` as `/file` takes it back: in quotes when it has spaces or starts with one.
pub fn quote_path(path: &str) -> String {
    if !path.contains(char::is_whitespace) && !path.starts_with(['"', '\'']) {
        path.to_owned()
    } else if path.contains('"') {
        format!("'{path}'")
    } else {
        format!("\"{path}\"")
    }
}

/// A path typed in the interface made absolute: `~/` is the `home` directory, a
/// relative path is taken from `cwd` (the interface's working directory, which may
/// differ from the node's). `None` for `~/` without a home directory.
pub fn absolute_path(typed: &str, cwd: &std::path::Path, home: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    if let Some(rest) = typed.strip_prefix("~/") {
        return home.map(|h| h.join(rest));
    }
    if typed == "~" {
        return home.map(std::path::Path::to_path_buf);
    }
    let path = std::path::Path::new(typed);
    Some(if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) })
}

/// Parse the words after `/room`.
fn parse_room(rest: &[&str]) -> Result<RoomCommand, CommandError> {
    match rest {
        [] => Ok(RoomCommand::Toggle),
        [sub] => match sub.to_lowercase().as_str() {
            "join" => Ok(RoomCommand::Join),
            "leave" | "part" => Ok(RoomCommand::Leave),
            "mute" | "unmute" => Ok(RoomCommand::Mute),
            _ => Err(CommandError::Usage(ROOM_USAGE)),
        },
        _ => Err(CommandError::Usage(ROOM_USAGE)),
    }
}

/// Parse the words after `/group`.
fn parse_group(rest: &[&str]) -> Result<GroupCommand, CommandError> {
    let Some((sub, args)) = rest.split_first() else {
        return Err(CommandError::Usage(GROUP_USAGE));
    };
    // Group names may contain spaces, and so may a contact's alias: keep the rest whole.
    let arg = args.join(" ");
    let required = |usage: &'static str| if arg.is_empty() { Err(CommandError::Usage(usage)) } else { Ok(arg.clone()) };
    match sub.to_lowercase().as_str() {
        "create" | "new" => required("/group create <name>").map(GroupCommand::Create),
        "add" | "invite" => required("/group add <contact>").map(GroupCommand::Add),
        "remove" | "kick" => required("/group remove <member>").map(GroupCommand::Remove),
        "leave" => Ok(GroupCommand::Leave),
        "members" | "who" => Ok(GroupCommand::Members),
        _ => Err(CommandError::Usage(GROUP_USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn typed_paths_become_absolute() {
        let (cwd, home) = (Path::new("/work/here"), Some(Path::new("/home/me")));
        assert_eq!(absolute_path("cat.png", cwd, home), Some(PathBuf::from("/work/here/cat.png")));
        assert_eq!(absolute_path("../x/cat.png", cwd, home), Some(PathBuf::from("/work/here/../x/cat.png")));
        assert_eq!(absolute_path("/tmp/cat.png", cwd, home), Some(PathBuf::from("/tmp/cat.png")));
        assert_eq!(absolute_path("~/cat.png", cwd, home), Some(PathBuf::from("/home/me/cat.png")));
        assert_eq!(absolute_path("~/cat.png", cwd, None), None);
    }

    #[test]
    fn quit_says_what_happens_to_the_node() {
        let daemon = help(false);
        let own = help(true);
        assert_eq!(daemon.len(), own.len());
        assert!(daemon.contains(&("/quit", "quit (the node keeps running)")));
        let (_, quit) = own.iter().find(|(c, _)| *c == "/quit").copied().unwrap_or_default();
        assert!(quit.contains("stop the node") && !quit.contains("keeps running"), "{quit}");
        // Only `/quit`'s line differs.
        let differ: Vec<_> = daemon.iter().zip(&own).filter(|(a, b)| a != b).map(|(a, _)| a.0).collect();
        assert_eq!(differ, ["/quit"]);
    }

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse("/add kith:abc Bob Smith"),
            Ok(Command::Add { target: "kith:abc".into(), alias: Some("Bob Smith".into()) })
        );
        assert_eq!(parse("/add 12D3x"), Ok(Command::Add { target: "12D3x".into(), alias: None }));
        assert_eq!(
            parse("/add kith:abc   \r\ndef\nghi Bob"),
            Ok(Command::Add { target: "kith:abcdefghi".into(), alias: Some("Bob".into()) }),
            "an invite copied over several rows is one invite"
        );
        assert_eq!(parse("/add"), Err(CommandError::Usage("/add <invite|peer-id> [alias]")));
        assert_eq!(parse("/ACCEPT"), Ok(Command::Accept(None)));
        assert_eq!(parse("/block  mallory "), Ok(Command::Block(Some("mallory".into()))));
        assert_eq!(parse("/unblock mallory"), Ok(Command::Unblock("mallory".into())));
        assert_eq!(parse("/unblock"), Err(CommandError::Usage("/unblock <contact>")));
        assert_eq!(parse("/remove"), Ok(Command::Remove(None)));
        assert_eq!(parse("/rename Алиса Петровна"), Ok(Command::Rename("Алиса Петровна".into())));
        assert_eq!(parse("/rename"), Err(CommandError::Usage("/rename <name>")));
        assert_eq!(parse("/status"), Ok(Command::Status));
        let set = |change| Ok(Command::SetProfile(change));
        assert_eq!(parse("/status  at the lake "), set(ProfileCommand::Status("at the lake".into())));
        assert_eq!(parse("/status -"), set(ProfileCommand::Status(String::new())));
        assert_eq!(parse("/name Алиса П."), set(ProfileCommand::Name("Алиса П.".into())));
        assert_eq!(parse("/name -"), set(ProfileCommand::Name(String::new())));
        assert!(matches!(parse("/name"), Err(CommandError::Usage(_))));
        assert_eq!(parse("/avatar ~/me.png"), set(ProfileCommand::Avatar(Some("~/me.png".into()))));
        assert_eq!(parse("/avatar \"My Photos/me.png\""), set(ProfileCommand::Avatar(Some("My Photos/me.png".into()))));
        assert_eq!(parse("/avatar -"), set(ProfileCommand::Avatar(None)));
        assert_eq!(parse("/avatar"), Err(CommandError::Usage(AVATAR_USAGE)));
        assert_eq!(parse("/profile"), Ok(Command::Profile(None)));
        assert_eq!(parse("/profile Алиса"), Ok(Command::Profile(Some("Алиса".into()))));
        let verify = |contact: &str, mark| Ok(Command::Verify { contact: contact.into(), mark });
        assert_eq!(parse("/verify Алиса"), verify("Алиса", None));
        assert_eq!(parse("/verify Алиса Петровна"), verify("Алиса Петровна", None));
        assert_eq!(parse("/verify Алиса mark"), verify("Алиса", Some(true)));
        assert_eq!(parse("/VERIFY Алиса Петровна  MARK "), verify("Алиса Петровна", Some(true)));
        assert_eq!(parse("/verify bob unmark"), verify("bob", Some(false)));
        assert_eq!(parse("/verify mark"), verify("mark", None), "a lone word is the contact");
        assert_eq!(parse("/verify"), Err(CommandError::Usage(VERIFY_USAGE)));
        assert_eq!(parse("/log"), Ok(Command::Log));
        assert_eq!(parse("/search"), Ok(Command::Search(None)));
        assert_eq!(parse("/search  встреча   в пятницу "), Ok(Command::Search(Some("встреча в пятницу".into()))));
        assert_eq!(parse("/find café"), Ok(Command::Search(Some("café".into()))));
        assert_eq!(parse("/group create Book club"), Ok(Command::Group(GroupCommand::Create("Book club".into()))));
        assert_eq!(parse("/group add bob"), Ok(Command::Group(GroupCommand::Add("bob".into()))));
        assert_eq!(parse("/group remove bob"), Ok(Command::Group(GroupCommand::Remove("bob".into()))));
        assert_eq!(parse("/group LEAVE"), Ok(Command::Group(GroupCommand::Leave)));
        assert_eq!(parse("/group members"), Ok(Command::Group(GroupCommand::Members)));
        assert_eq!(parse("/group create"), Err(CommandError::Usage("/group create <name>")));
        assert_eq!(parse("/group"), Err(CommandError::Usage(GROUP_USAGE)));
        assert_eq!(parse("/group frob"), Err(CommandError::Usage(GROUP_USAGE)));
        assert_eq!(
            parse("/file ./cat.png look at this"),
            Ok(Command::File { path: "./cat.png".into(), caption: Some("look at this".into()) })
        );
        assert_eq!(parse("/file /tmp/a.txt"), Ok(Command::File { path: "/tmp/a.txt".into(), caption: None }));
        assert_eq!(
            parse("/file \"My Photos/cat 1.png\"  мяу"),
            Ok(Command::File { path: "My Photos/cat 1.png".into(), caption: Some("мяу".into()) })
        );
        assert_eq!(parse("/file 'it\"s.txt'"), Ok(Command::File { path: "it\"s.txt".into(), caption: None }));
        assert_eq!(parse("/file"), Err(CommandError::Usage(FILE_USAGE)));
        assert_eq!(parse("/file \"unclosed"), Err(CommandError::Usage(FILE_USAGE)));
        for path in ["/tmp/a b.png", "/tmp/plain.png", "/tmp/say \"hi\".txt"] {
            let line = format!("/file {}", quote_path(path));
            assert_eq!(parse(&line), Ok(Command::File { path: path.into(), caption: None }), "{line}");
        }
        assert_eq!(parse("/call"), Ok(Command::Call(None)));
        assert_eq!(parse("/call Алиса Петровна"), Ok(Command::Call(Some("Алиса Петровна".into()))));
        assert_eq!(parse("/ANSWER"), Ok(Command::Answer));
        assert_eq!(parse("/hangup"), Ok(Command::Hangup));
        assert_eq!(parse("/decline"), Ok(Command::Hangup));
        assert_eq!(parse("/mute"), Ok(Command::Mute));
        assert_eq!(parse("/room"), Ok(Command::Room(RoomCommand::Toggle)));
        assert_eq!(parse("/Room JOIN"), Ok(Command::Room(RoomCommand::Join)));
        assert_eq!(parse("/room leave"), Ok(Command::Room(RoomCommand::Leave)));
        assert_eq!(parse("/room unmute"), Ok(Command::Room(RoomCommand::Mute)));
        assert_eq!(parse("/room dance"), Err(CommandError::Usage(ROOM_USAGE)));
        assert_eq!(parse("/room leave now"), Err(CommandError::Usage(ROOM_USAGE)));
        assert_eq!(parse("/reply"), Ok(Command::Reply(None)));
        assert_eq!(parse("/reply  where?\n  at 8 "), Ok(Command::Reply(Some("where?\n  at 8".into()))), "as typed");
        assert_eq!(parse("/edit"), Ok(Command::Edit(None)));
        assert_eq!(parse("/EDIT fixed  text"), Ok(Command::Edit(Some("fixed  text".into()))));
        assert_eq!(parse("/delete"), Ok(Command::Delete), "a message, no longer the contact (/remove)");
        assert!(matches!(parse("/delete bob"), Err(CommandError::Usage(_))));
        assert_eq!(parse("/delete-all"), Ok(Command::DeleteAll));
        assert_eq!(parse("/unsend"), Ok(Command::DeleteAll));
        assert_eq!(parse("/react 👍"), Ok(Command::React("👍".into())));
        assert_eq!(parse("/react"), Err(CommandError::Usage("/react <emoji>")));
        assert_eq!(parse("/react 👍 🎉"), Err(CommandError::Usage("/react <emoji>")));
        assert_eq!(parse("/frobnicate"), Err(CommandError::Unknown("frobnicate".into())));
        assert_eq!(parse("/"), Err(CommandError::Unknown(String::new())));
    }
}
