//! Domain types: validated addresses, message content and the status lifecycle.
//! Nothing here knows about HTTP, SQL or Redis.

mod address;
mod api_key;
pub mod compliance;
mod conversation;
mod cursor;
pub mod event;
mod json_numbers;
mod message;
pub mod schedule;
pub mod segments;

pub use address::{Address, ChannelFamily, EmailAddress, PhoneNumber, mask as address_mask};
pub use api_key::{ApiKey, KEY_PREFIX, MAX_KEY_LEN, NewApiKey, hash_key};
pub use conversation::{
    Conversation, ConversationPatch, ConversationStatistics, ConversationStatus,
    MAX_SEARCH_QUERY_CHARS, MAX_TITLE_CHARS, NewConversation, SearchQuery, parse_address,
    parse_channel,
};
pub use cursor::{CursorPosition, decode_cursor, encode_cursor};
pub use message::{
    Direction, ErrorInfo, InboundContent, Message, MessageEvent, MessageStatus, MessageType,
    NewMessage, OutboundContent, SmsSize, TransitionError, ValidationError,
};
pub use message::{
    MAX_ATTACHMENT_URL_CHARS, MAX_ATTACHMENTS, MAX_EMAIL_BODY_BYTES, MAX_SUBJECT_CHARS,
};
