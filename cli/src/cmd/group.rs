//! `kith group ...`: create groups, manage their members, list them.
//!
//! Changes need a running node (they are signed and sent to every member at once);
//! listings read the store and work without one.

use kith_p2p::kith_storage::Role;
use kith_p2p::control::Request;
use kith_p2p::node::GroupChange;
use kith_p2p::views::GroupView;
use serde_json::Value;

use super::net::call;
use super::print;
use crate::args::{GroupCommand, Global};
use crate::failure::Result;
use crate::output;

pub(crate) fn run(global: &Global, command: GroupCommand) -> Result {
    let home = super::home(global)?;
    let (change, json_out) = match command {
        GroupCommand::Create(a) => (GroupChange::Create { name: a.name }, a.output.json),
        GroupCommand::Add(a) => (GroupChange::Add { group: a.group, contact: a.member }, a.output.json),
        GroupCommand::Remove(a) => (GroupChange::Remove { group: a.group, member: a.member }, a.output.json),
        GroupCommand::Leave(a) => (GroupChange::Leave { group: a.group }, a.output.json),
        GroupCommand::Promote(a) => {
            (GroupChange::SetRole { group: a.group, member: a.member, role: Role::Admin }, a.output.json)
        }
        GroupCommand::Demote(a) => {
            (GroupChange::SetRole { group: a.group, member: a.member, role: Role::Member }, a.output.json)
        }
        GroupCommand::Rename(a) => (GroupChange::Rename { group: a.group, name: a.name }, a.output.json),
        GroupCommand::Accept(a) => (GroupChange::Accept { group: a.group }, a.output.json),
        GroupCommand::Decline(a) => (GroupChange::Decline { group: a.group }, a.output.json),
        GroupCommand::Members(a) => {
            let result = call(&home, Request::Group { group: a.group })?;
            return show(result, a.output.json);
        }
        GroupCommand::List(out) => return list(&home, out.json, false),
        GroupCommand::Invites(out) => return list(&home, out.json, true),
    };
    show(call(&home, Request::ChangeGroup(change))?, json_out)
}

/// Groups (with `invites`, only invitations), as JSON or for people.
fn list(home: &kith_p2p::home::Home, json_out: bool, invites: bool) -> Result {
    let result = call(home, Request::Groups {})?;
    let groups: Vec<GroupView> =
        print::view::<Vec<GroupView>>(result)?.into_iter().filter(|g| !invites || g.invited_by.is_some()).collect();
    if json_out {
        return output::json(&serde_json::to_value(&groups).unwrap_or_default());
    }
    if groups.is_empty() {
        return output::line(if invites {
            "no invitations"
        } else {
            "no groups (create one with `kith group create NAME`)"
        });
    }
    for g in &groups {
        print::group_line(g)?;
    }
    Ok(())
}

/// One group, as JSON or for people.
fn show(result: Value, json_out: bool) -> Result {
    if json_out {
        return output::json(&result);
    }
    print::group(&print::view::<GroupView>(result)?)
}