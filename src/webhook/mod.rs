//! Provider webhooks: verifying that a call really comes from the provider, and turning
//! its payload into receipts and inbound messages.

pub mod inbound_email;
pub mod sendgrid;
pub mod signature;
pub mod twilio;
