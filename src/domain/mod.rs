//! Domain types: validated addresses, message content and the status lifecycle.
//! Nothing here knows about HTTP, SQL or Redis.

mod address;
mod api_key;
pub mod compliance;
mod conversation;
mod message;
pub mod schedule;
pub mod segments;

pub use address::{Address, ChannelFamily, EmailAddress, PhoneNumber, mask as address_mask};
pub use api_key::{ApiKey, KEY_PREFIX, MAX_KEY_LEN, NewApiKey, hash_key};
pub use conversation::{
    Conversation, ConversationPatch, ConversationStatistics, ConversationStatus, NewConversation,
    SearchQuery, parse_address, parse_channel,
};
pub use message::{
    Direction, ErrorInfo, InboundContent, Message, MessageEvent, MessageStatus, MessageType,
    NewMessage, OutboundContent, SmsSize, TransitionError, ValidationError,
};
