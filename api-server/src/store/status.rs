//! The sender's view of a message's status, derived from the other members' watermarks.

use shared::ids::UserId;
use shared::wire::MessageStatus;

/// `read` once every member but the sender has read up to `seq`, `delivered` once every one has
/// it delivered, else `sent`. `members` is `(user, delivered_up_to, read_up_to)`.
pub fn message_status(seq: i64, sender: UserId, members: &[(UserId, i64, i64)]) -> MessageStatus {
    let others = members.iter().filter(|(u, _, _)| *u != sender);
    let mut any = false;
    let (mut all_delivered, mut all_read) = (true, true);
    for &(_, delivered, read) in others {
        any = true;
        all_delivered &= delivered.max(read) >= seq;
        all_read &= read >= seq;
    }
    match (any, all_read, all_delivered) {
        (false, _, _) => MessageStatus::Sent,
        (true, true, _) => MessageStatus::Read,
        (true, false, true) => MessageStatus::Delivered,
        _ => MessageStatus::Sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_slowest_other_member() {
        let me = UserId(1);
        let members = [(me, 0, 0), (UserId(2), 5, 3), (UserId(3), 4, 4)];
        assert_eq!(message_status(3, me, &members), MessageStatus::Read);
        assert_eq!(message_status(4, me, &members), MessageStatus::Delivered);
        assert_eq!(message_status(5, me, &members), MessageStatus::Sent);
        assert_eq!(message_status(1, me, &[(me, 0, 0)]), MessageStatus::Sent);
    }
}
