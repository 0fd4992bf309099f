//! Paging a list: an offset or a cursor from the client, a total counted only as far as
//! `LIST_COUNT_LIMIT`, and the cursor of the page that follows.

use super::{Context, ServiceError};
use crate::domain::{CursorPosition, decode_cursor, encode_cursor};
use crate::store::{After, Listed, Page, Window};

/// Which page a client asked for: `page.offset` rows in, or right after `cursor`'s row
/// (never both: a cursor with a non-zero offset is refused before this).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub page: Page,
    pub cursor: Option<String>,
}

/// A page of a list as the API answers it.
#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// Exact while at most `LIST_COUNT_LIMIT` rows match; an estimate above.
    pub total: i64,
    pub total_is_estimate: bool,
    /// Where the next page starts; `None` after the last one.
    pub next_cursor: Option<String>,
}

/// The window a request reads of the listing described by `scope`.
pub(super) fn window(
    ctx: Context<'_>,
    scope: &str,
    request: &PageRequest,
) -> Result<Window, ServiceError> {
    let after = request
        .cursor
        .as_deref()
        .map(|raw| decode_cursor(scope, raw))
        .transpose()?
        .map(|p| After {
            key: p.key,
            id: p.id,
        });
    if after.is_some() && request.page.offset != 0 {
        return Err(ServiceError::invalid(
            "cursor",
            "cannot be combined with a non-zero offset",
        ));
    }
    Ok(Window {
        page: request.page,
        after,
        count_limit: Some(ctx.settings.listing.count_limit),
    })
}

/// The answer for a window of the listing `scope`; `position` gives a row's sort key and id.
pub(super) fn answer<T>(
    scope: &str,
    listed: Listed<T>,
    position: fn(&T) -> CursorPosition,
) -> ListPage<T> {
    let next_cursor = listed
        .more
        .then(|| listed.items.last())
        .flatten()
        .map(|last| encode_cursor(scope, position(last)));
    ListPage {
        items: listed.items,
        total: listed.total,
        total_is_estimate: listed.total_is_estimate,
        next_cursor,
    }
}
