//! `kith profile` (set ours, show ours or a contact's) and `kith verify` (a
//! contact's safety number, marking it verified).

use base64::Engine as _;
use kith_p2p::control::Request;
use kith_p2p::views::{ProfileView, VerifyView};

use super::net::call;
use super::print::{self, safe};
use crate::args::{Global, ProfileCommand, ProfileSetArgs, ProfileShowArgs, VerifyArgs};
use crate::failure::{Failure, Result};
use crate::output;

/// Runs `kith profile set|show`.
pub(crate) fn run(global: &Global, command: ProfileCommand) -> Result {
    match command {
        ProfileCommand::Set(args) => set(global, args),
        ProfileCommand::Show(args) => show(global, args),
    }
}

fn set(global: &Global, args: ProfileSetArgs) -> Result {
    if args.name.is_none() && args.status.is_none() && args.avatar.is_none() && !args.no_avatar {
        return Err(Failure::usage("nothing to change: give --name, --status, --avatar or --no-avatar"));
    }
    let home = super::home(global)?;
    let avatar = args.avatar.as_deref().map(super::files::absolute).transpose()?;
    let request = Request::SetProfile { name: args.name, status: args.status, avatar, clear_avatar: args.no_avatar };
    let result = call(&home, request)?;
    if args.output.json {
        return output::json(&result);
    }
    let profile: ProfileView = print::view(result)?;
    lines(&profile)?;
    output::line("sent to your contacts")
}

fn show(global: &Global, args: ProfileShowArgs) -> Result {
    let home = super::home(global)?;
    let with_avatar = args.avatar_out.is_some();
    let result = call(&home, Request::Profile { contact: args.contact, avatar: with_avatar })?;
    let profile: ProfileView = print::view(result.clone())?;
    if let Some(out) = &args.avatar_out {
        let data = profile.avatar.as_ref().and_then(|a| a.data.as_deref()).ok_or_else(|| Failure::usage("no avatar to write"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| Failure::usage(format!("the node sent a damaged picture: {e}")))?;
        std::fs::write(out, bytes).map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
    }
    if args.output.json {
        return output::json(&result);
    }
    lines(&profile)
}

/// The profile as lines of `field: value`.
fn lines(p: &ProfileView) -> Result {
    output::line(format!("peer id: {}", p.peer_id))?;
    output::line(format!("name:    {}", p.name.as_deref().map_or_else(|| "(none)".to_owned(), safe)))?;
    if let Some(alias) = &p.alias {
        output::line(format!("alias:   {} (shown instead of their name)", safe(alias)))?;
    }
    output::line(format!("status:  {}", p.status.as_deref().map_or_else(|| "(none)".to_owned(), safe)))?;
    let avatar = match &p.avatar {
        Some(a) => format!("{} picture, {}", safe(&a.media_type), kith_p2p::display::human_size(a.size as u64)),
        None => "(none)".to_owned(),
    };
    output::line(format!("avatar:  {avatar}"))?;
    match p.updated_at {
        Some(at) => output::line(format!("updated: {}", print::date_time(at))),
        None => output::line("updated: (no profile received yet)"),
    }
}

/// `kith verify`: the safety number in rows of six groups, its QR code, and whether
/// the contact is verified (or its key changed since).
pub(crate) fn verify(global: &Global, args: VerifyArgs) -> Result {
    let home = super::home(global)?;
    let mark = match (args.mark, args.unmark) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let result = call(&home, Request::Verify { contact: args.contact, mark })?;
    if args.output.json {
        return output::json(&result);
    }
    let v: VerifyView = print::view(result)?;
    let name = safe(v.contact.label());
    output::line(format!("safety number with {name}:"))?;
    let groups: Vec<&str> = v.safety_number.split(' ').collect();
    for row in groups.chunks(6) {
        output::line(format!("  {}", row.join(" ")))?;
    }
    output::line(v.qr.trim_end_matches('\n'))?;
    if v.contact.key_changed {
        output::line(format!("warning: {name}'s key changed since you verified or added them"))?;
    }
    match v.verified_at {
        Some(at) if !v.contact.key_changed => output::line(format!("verified {}", print::date_time(at))),
        Some(_) => output::line(format!(
            "messages to {name} are held: compare the numbers again, then `kith verify {name} --mark`"
        )),
        None => output::line(format!(
            "not verified: compare these numbers with {name}'s (in person or on a call), then `kith verify {name} --mark`"
        )),
    }
}

