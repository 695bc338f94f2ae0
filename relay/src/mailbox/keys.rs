//! Mailbox ids: what a valid one is.

use super::MailboxError;

/// Longest mailbox id, in bytes (a libp2p peer id is at most 42 + a few bytes).
pub const MAX_MAILBOX_ID_LEN: usize = 64;

/// Checks that `mailbox` is a valid id: 1 to [`MAX_MAILBOX_ID_LEN`] bytes.
pub(crate) fn check(mailbox: &[u8]) -> Result<(), MailboxError> {
    if (1..=MAX_MAILBOX_ID_LEN).contains(&mailbox.len()) {
        Ok(())
    } else {
        Err(MailboxError::InvalidMailbox { len: mailbox.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_to_sixty_four_bytes() {
        assert!(check(b"").is_err());
        assert!(check(&[7; MAX_MAILBOX_ID_LEN + 1]).is_err());
        assert!(check(&[7; MAX_MAILBOX_ID_LEN]).is_ok());
        assert!(check(b"ab").is_ok());
    }
}
