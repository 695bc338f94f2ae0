//! Replies, and changes to messages already sent: edits, deletes for everyone and
//! reactions. Each is a message of its own (see [`kith_storage::Link`]), composed,
//! stored, sent and retried through the same path as a text, to the conversation
//! of the message it names — so offline peers get them through relays like
//! messages, and every receiver applies them by the same rules.

use kith_storage::{Link, Message};

use super::{Command, NodeError, NodeHandle, SendRequest};
use crate::ops::{self, OpError};
use crate::views::MessageView;

impl NodeHandle {
    /// Sends `text` to `target` (a contact or group) as a reply to the message
    /// `reply_to` (its id), which must belong to that conversation.
    pub async fn reply(&self, target: &str, text: &str, reply_to: &str) -> Result<MessageView, NodeError> {
        let quoted = ops::message_by_id(&self.store, reply_to)?;
        let conversation = ops::conversation_of(&self.store, &self.peer_id, target)?;
        if quoted.conversation != conversation {
            return Err(OpError::Invalid(format!("message {reply_to} is not in the conversation with {target}")).into());
        }
        self.send_linked(target.to_owned(), text.to_owned(), Link::ReplyTo(quoted.id)).await
    }

    /// Replaces the text of our message `id` with `text` for everyone who got it;
    /// returns the message as it now shows. Only its author may.
    pub async fn edit(&self, id: &str, text: &str) -> Result<MessageView, NodeError> {
        let message = self.own_live_message(id, "edit")?;
        self.change(&message, text, Link::Edit(message.id)).await
    }

    /// Deletes our message `id` for everyone who got it (its text shows as
    /// deleted); returns the message as it now shows. Only its author may; a
    /// message already deleted is left as it is.
    pub async fn delete_for_everyone(&self, id: &str) -> Result<MessageView, NodeError> {
        let message = ops::message_by_id(&self.store, id)?;
        if self.store.messages().annotations(&message).map_err(OpError::from)?.deleted {
            return Ok(ops::message_view(&self.store, &message)?);
        }
        let message = self.own_live_message(id, "delete for everyone")?;
        let view = self.change(&message, "", Link::Delete(message.id)).await?;
        if message.file.is_some() {
            // Its file goes; the change event that asks for that is not sent for a
            // message we had hidden, so ask here.
            self.sweep_files();
        }
        Ok(view)
    }

    /// Reacts to message `id` with `emoji`, or takes our reaction back when we
    /// already reacted with it; returns the message as it now shows.
    pub async fn react(&self, id: &str, emoji: &str) -> Result<MessageView, NodeError> {
        let emoji = emoji.trim();
        if !kith_storage::valid_emoji(emoji) {
            return Err(OpError::Invalid(format!("{emoji:?} is not one emoji")).into());
        }
        let message = ops::message_by_id(&self.store, id)?;
        let annotations = self.store.messages().annotations(&message).map_err(OpError::from)?;
        if annotations.deleted {
            return Err(OpError::NotAllowed("that message was deleted".into()).into());
        }
        let me = self.peer_id.to_string();
        let on = !annotations.reactions.iter().any(|r| r.emoji == emoji && r.by.contains(&me));
        self.change(&message, "", Link::React { target: message.id, emoji: emoji.to_owned(), on }).await
    }

    /// Our message `id`, not deleted: what `action` needs.
    fn own_live_message(&self, id: &str, action: &str) -> Result<Message, OpError> {
        let message = ops::message_by_id(&self.store, id)?;
        if message.author != self.peer_id.to_string() {
            return Err(OpError::NotAllowed(format!("only its author can {action} a message")));
        }
        if self.store.messages().annotations(&message)?.deleted {
            return Err(OpError::NotAllowed("that message was deleted".into()));
        }
        Ok(message)
    }

    /// Sends the change `link` to `message`'s conversation; returns the message
    /// as it shows once the change is stored.
    async fn change(&self, message: &Message, text: &str, link: Link) -> Result<MessageView, NodeError> {
        let target = ops::target_of(&self.store, message)?;
        self.send_linked(target, text.to_owned(), link).await?;
        Ok(ops::message_view(&self.store, message)?)
    }

    async fn send_linked(&self, target: String, text: String, link: Link) -> Result<MessageView, NodeError> {
        self.ask(|reply| Command::Send(SendRequest { contact: target, text, attachment: None, link: Some(link), reply })).await?
    }
}
