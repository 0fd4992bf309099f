//! Inbound messages from provider webhooks.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::webhook::twilio::InboundSms;

pub async fn store_twilio_inbound(
    _state: &AppState,
    _inbound: InboundSms,
    _verified: bool,
) -> Result<(), ApiError> {
    Err(ApiError::Internal(anyhow::anyhow!(
        "inbound messages land with the conversations work"
    )))
}

pub async fn sendgrid_inbound_parse(
    _state: AppState,
    _query: Vec<(String, String)>,
    _headers: HeaderMap,
    _request: Request,
) -> Result<Response, ApiError> {
    Err(ApiError::Internal(anyhow::anyhow!(
        "inbound messages land with the conversations work"
    )))
}
