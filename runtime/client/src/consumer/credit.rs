//! Credit accounting for a subscription, with no I/O: how much the node
//! may still push, how much the client holds unconsumed, and when to grant
//! more. The invariant is that what the node may push plus what the client
//! holds stays within the window, except for the one oversized batch the
//! protocol allows. This module never sends anything itself.

/// Mirrors the node's view of a subscription's credit.
///
/// The node counts credit as what was granted minus what it sent, so a
/// batch larger than the credit left leaves a debt that later grants pay
/// first; the mirror is signed for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreditWindow {
    window_messages: u32,
    window_bytes: u32,
    /// What the node may still push (negative: a debt).
    node_messages: i64,
    node_bytes: i64,
    /// Delivered to this client and not yet consumed.
    held_messages: i64,
    held_bytes: i64,
}

impl CreditWindow {
    pub(crate) fn new(window_messages: u32, window_bytes: u32) -> CreditWindow {
        CreditWindow {
            window_messages: window_messages.max(1),
            window_bytes: window_bytes.max(1),
            node_messages: 0,
            node_bytes: 0,
            held_messages: 0,
            held_bytes: 0,
        }
    }

    /// A delivery of `messages` records in `bytes` bytes of `batches`
    /// batches arrived. Fails if the node sent without credit, or more
    /// bytes than its credit beyond the single oversized batch the
    /// protocol allows.
    pub(crate) fn on_delivery(
        &mut self,
        messages: u32,
        bytes: u32,
        batches: u32,
    ) -> Result<(), String> {
        if self.node_messages <= 0 || self.node_bytes <= 0 {
            return Err(format!(
                "delivery of {messages} messages in {bytes} bytes while credit was {} messages, {} bytes",
                self.node_messages, self.node_bytes
            ));
        }
        if i64::from(bytes) > self.node_bytes && batches > 1 {
            return Err(format!(
                "delivery of {bytes} bytes in {batches} batches exceeds the {} bytes of credit left",
                self.node_bytes
            ));
        }
        self.node_messages -= i64::from(messages);
        self.node_bytes -= i64::from(bytes);
        self.held_messages += i64::from(messages);
        self.held_bytes += i64::from(bytes);
        Ok(())
    }

    /// The application has consumed (or skipped) a whole delivery.
    pub(crate) fn on_consumed(&mut self, messages: u32, bytes: u32) {
        self.held_messages = (self.held_messages - i64::from(messages)).max(0);
        self.held_bytes = (self.held_bytes - i64::from(bytes)).max(0);
    }

    /// A new stream replaces a lost one: the node starts it with no
    /// credit, while what the application holds still counts.
    pub(crate) fn on_new_stream(&mut self) {
        self.node_messages = 0;
        self.node_bytes = 0;
    }

    /// Credit to grant now, if enough room opened up: a grant tops the
    /// window up (paying any debt) once at least half of either side is
    /// free, so credit frames stay rare.
    pub(crate) fn grant(&mut self) -> Option<(u32, u32)> {
        let free = |window: u32, node: i64, held: i64| {
            (i64::from(window) - node - held).clamp(0, i64::from(u32::MAX)) as u32
        };
        let messages = free(self.window_messages, self.node_messages, self.held_messages);
        let bytes = free(self.window_bytes, self.node_bytes, self.held_bytes);
        let worth_it =
            messages >= self.window_messages.div_ceil(2) || bytes >= self.window_bytes.div_ceil(2);
        if !worth_it {
            return None;
        }
        self.node_messages += i64::from(messages);
        self.node_bytes += i64::from(bytes);
        Some((messages, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_grant_is_the_whole_window() {
        let mut c = CreditWindow::new(100, 1000);
        assert_eq!(c.grant(), Some((100, 1000)));
        assert_eq!(c.grant(), None, "nothing freed yet");
    }

    #[test]
    fn a_new_stream_starts_without_credit_but_keeps_what_is_held() {
        let mut c = CreditWindow::new(100, 1000);
        c.grant();
        c.on_delivery(30, 300, 1).expect("within credit");
        c.on_new_stream();
        assert!(
            c.on_delivery(1, 1, 1).is_err(),
            "the new stream has no credit"
        );
        assert_eq!(c.grant(), Some((70, 700)), "held messages still count");
        c.on_consumed(30, 300);
        assert_eq!(c.grant(), None, "30% free is not worth a frame");
    }

    #[test]
    fn regrants_after_half_is_consumed() {
        let mut c = CreditWindow::new(100, 1000);
        c.grant();
        c.on_delivery(40, 400, 2).expect("within credit");
        assert_eq!(c.grant(), None, "held counts against the window");
        c.on_consumed(40, 400);
        assert_eq!(c.grant(), None, "40% free is not worth a frame");
        c.on_delivery(20, 100, 1).expect("within credit");
        c.on_consumed(20, 100);
        assert_eq!(c.grant(), Some((60, 500)));
        // The node now has 40+60 messages, 500+500 bytes: the full window.
        assert_eq!(c.node_messages, 100);
        assert_eq!(c.node_bytes, 1000);
    }

    #[test]
    fn oversized_single_batch_is_allowed_and_saturates() {
        let mut c = CreditWindow::new(100, 1000);
        c.grant();
        c.on_delivery(1, 5000, 1)
            .expect("one big batch alone is allowed");
        assert_eq!(c.node_bytes, -4000, "the node counts a debt");
        assert_eq!(c.grant(), None, "holding more than the window");
        c.on_consumed(1, 5000);
        assert_eq!(
            c.grant(),
            Some((1, 5000)),
            "the grant pays the debt and refills the window"
        );
        assert_eq!(c.node_bytes, 1000);
    }

    #[test]
    fn refuses_deliveries_beyond_credit() {
        let mut c = CreditWindow::new(10, 1000);
        assert!(c.on_delivery(1, 10, 1).is_err(), "no credit granted yet");
        c.grant();
        assert!(
            c.on_delivery(2, 1500, 2).is_err(),
            "several batches beyond byte credit"
        );
        c.on_delivery(10, 100, 1)
            .expect("exactly the message credit");
        assert!(c.on_delivery(1, 10, 1).is_err(), "message credit used up");
    }

    #[test]
    fn a_batch_beyond_the_message_credit_is_a_debt_paid_first() {
        let mut c = CreditWindow::new(3, 1 << 20);
        c.grant();
        c.on_delivery(50, 600, 1)
            .expect("one batch of 50 with 3 credits left");
        assert!(
            c.on_delivery(1, 10, 1).is_err(),
            "in debt: no more until granted"
        );
        c.on_consumed(50, 600);
        assert_eq!(c.grant(), Some((50, 600)));
        assert_eq!(c.node_messages, 3);
    }

    #[test]
    fn grants_when_held_drains_to_zero() {
        let mut c = CreditWindow::new(4, 1 << 20);
        c.grant();
        for _ in 0..4 {
            c.on_delivery(1, 100, 1).expect("within credit");
        }
        assert_eq!(c.grant(), None, "all held: nothing to grant");
        for _ in 0..4 {
            c.on_consumed(1, 100);
        }
        assert_eq!(c.grant(), Some((4, 400)));
    }
}
