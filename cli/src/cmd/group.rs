//! `kith group ...`: create groups, manage their members, list them.
//!
//! Changes need a running node (they are signed and sent to every member at once);
//! listings read the store and work without one.

use kith_p2p::views::GroupView;
use serde_json::{Value, json};

use super::net::call;
use super::print;
use crate::args::{GroupCommand, Global};
use crate::failure::Result;
use crate::output;

pub(crate) fn run(global: &Global, command: GroupCommand) -> Result {
    let home = super::home(global)?;
    let (method, params, json_out) = match command {
        GroupCommand::Create(a) => ("group_create", json!({ "name": a.name }), a.output.json),
        GroupCommand::Add(a) => ("group_add", json!({ "group": a.group, "contact": a.member }), a.output.json),
        GroupCommand::Remove(a) => ("group_remove", json!({ "group": a.group, "member": a.member }), a.output.json),
        GroupCommand::Leave(a) => ("group_leave", json!({ "group": a.group }), a.output.json),
        GroupCommand::Promote(a) => {
            ("group_role", json!({ "group": a.group, "member": a.member, "role": "admin" }), a.output.json)
        }
        GroupCommand::Demote(a) => {
            ("group_role", json!({ "group": a.group, "member": a.member, "role": "member" }), a.output.json)
        }
        GroupCommand::Members(a) => ("group", json!({ "group": a.group }), a.output.json),
        GroupCommand::Rename(a) => ("group_rename", json!({ "group": a.group, "name": a.name }), a.output.json),
        GroupCommand::List(out) => {
            let result = call(&home, "groups", Value::Null)?;
            if out.json {
                return output::json(&result);
            }
            let groups = print::view::<Vec<GroupView>>(result)?;
            if groups.is_empty() {
                return output::line("no groups (create one with `kith group create NAME`)");
            }
            for g in &groups {
                print::group_line(g)?;
            }
            return Ok(());
        }
    };
    let result = call(&home, method, params)?;
    if json_out {
        return output::json(&result);
    }
    print::group(&print::view::<GroupView>(result)?)
}
