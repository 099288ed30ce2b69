//! The action types a reply may ask for, in their fixed step order.

use serde::{Deserialize, Serialize};

/// What a downstream may ask the service to do after its reply. The order of [`ActionType::ALL`]
/// is the saga's step order, whatever the order in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    /// `create_order`.
    CreateOrder,
    /// `create_support_ticket`.
    CreateSupportTicket,
    /// `notify_sales`.
    NotifySales,
    /// `flag_for_review`.
    FlagForReview,
}

impl ActionType {
    /// Every type, in step order.
    pub const ALL: [ActionType; 4] = [
        ActionType::CreateOrder,
        ActionType::CreateSupportTicket,
        ActionType::NotifySales,
        ActionType::FlagForReview,
    ];

    /// The name in replies, in `[actions]`, as the saga step's name and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::CreateOrder => "create_order",
            ActionType::CreateSupportTicket => "create_support_ticket",
            ActionType::NotifySales => "notify_sales",
            ActionType::FlagForReview => "flag_for_review",
        }
    }

    /// The type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The name of this type's circuit breaker (`action:create_order`).
    pub fn breaker_name(self) -> String {
        format!("action:{}", self.as_str())
    }
}

impl std::fmt::Display for ActionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
