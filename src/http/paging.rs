//! Paging of lists: `?page=&page_size=`, or the whole list (bounded) when neither is sent.

use serde::Deserialize;

use crate::error::{ApiError, ApiResult, FieldError};

/// `?page=1&page_size=20`; with neither, the whole list (at most [`WHOLE_LIST`] records, as the
/// frontend never pages). Shared by `/databases` and `/saved-queries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Paging {
    /// 1-based page (default 1 when `page_size` is given; without both the whole list is
    /// returned, up to 1000 records).
    #[param(value_type = Option<i64>)]
    pub page: Option<String>,
    /// Records per page, 1-100 (default 20 when `page` is given).
    #[param(value_type = Option<i64>)]
    pub page_size: Option<String>,
}

/// The most records one unpaged `GET /databases` returns.
pub const WHOLE_LIST: i64 = 1000;

pub(super) fn paging(p: &Paging) -> ApiResult<(i64, i64)> {
    if p.page.is_none() && p.page_size.is_none() {
        return Ok((1, WHOLE_LIST));
    }
    let mut errs = Vec::new();
    let parse =
        |v: &Option<String>, d: i64| v.as_deref().map_or(Some(d), |s| s.trim().parse().ok());
    let page = parse(&p.page, 1).filter(|n| *n >= 1);
    let size = parse(&p.page_size, 20).filter(|n| (1..=100).contains(n));
    if page.is_none() {
        errs.push(FieldError::new("page", "a whole number from 1"));
    }
    if size.is_none() {
        errs.push(FieldError::new("page_size", "a whole number from 1 to 100"));
    }
    match (page, size) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(ApiError::Validation(errs)),
    }
}
