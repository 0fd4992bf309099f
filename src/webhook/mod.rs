//! Provider webhooks: verifying that a call really comes from the provider.

pub mod signature;
