//! `kith edit`, `kith delete` and `kith react`: changes to messages already sent.

use kith_p2p::control::Request;
use kith_p2p::views::MessageView;

use super::net::call;
use super::print;
use crate::args::{DeleteArgs, EditArgs, Global, ReactArgs};
use crate::failure::Result;
use crate::output;

/// Edits one of our messages; prints `edited ID` (`--json`: the message as it now shows).
pub(crate) fn edit(global: &Global, args: EditArgs) -> Result {
    let home = super::home(global)?;
    let text = super::chat::text_arg(&args.text)?;
    let result = call(&home, Request::Edit { id: args.id, text })?;
    if args.output.json {
        return output::json(&result);
    }
    let message: MessageView = print::view(result)?;
    output::line(format!("edited {}", message.id))
}

/// Deletes a message here, or one of ours for everyone.
pub(crate) fn delete(global: &Global, args: DeleteArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Delete { id: args.id.clone(), for_everyone: args.for_everyone })?;
    if args.output.json {
        return output::json(&result);
    }
    if args.for_everyone {
        output::line(format!("deleted {} for everyone", args.id))
    } else {
        output::line(format!("deleted {} here (others still have it)", args.id))
    }
}

/// Reacts to a message (or takes the reaction back); prints the message's reactions.
pub(crate) fn react(global: &Global, args: ReactArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::React { id: args.id, emoji: args.emoji })?;
    if args.output.json {
        return output::json(&result);
    }
    let message: MessageView = print::view(result)?;
    if message.reactions.is_empty() {
        return output::line(format!("{}: no reactions", message.id));
    }
    output::line(format!("{}: {}", message.id, print::reactions(&message)))
}
