//! get and list, with selectors, pagination (`limit`/`continue`) and reads at a
//! resourceVersion.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{RangeRequest, Revision, StoreError};

use super::{get_object, store_error, ApiRequest};
use crate::model::LabelSelector;
use crate::objects;
use crate::selectors::FieldSelector;
use crate::status::{ApiError, ApiResult};

pub async fn get(request: ApiRequest) -> ApiResult<Response> {
    let (_, object) = get_object(&request, request.target.object_name()).await?;
    request.render(StatusCode::OK, object)
}

pub async fn list(request: ApiRequest) -> ApiResult<Response> {
    let page = list_page(&request).await?;
    let resource = &request.target.resource;
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = Value::String(token.clone());
    }
    let list = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": page.items,
    });
    request.render(StatusCode::OK, list)
}

/// Which objects a list or watch wants.
pub struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    pub fn from_request(request: &ApiRequest) -> ApiResult<Self> {
        let params = &request.params;
        let labels = LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""), &request.target.resource.plural)?;
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(&objects::labels(object)) && self.fields.matches(object)
    }

    /// True when no selector was given: every object matches.
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Value>,
    /// The revision the list was read at: its `resourceVersion`.
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// What a continue token holds: the revision of the first page and the last
/// key returned (after the list's prefix), as Kubernetes' tokens do.
#[derive(Debug, Serialize, Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

fn encode_token(revision: Revision, start: &str) -> String {
    let token = ContinueToken { v: TOKEN_VERSION.into(), rv: revision, start: start.into() };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_token(token: &str) -> ApiResult<ContinueToken> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token))
        .map_err(|_| invalid("not base64"))?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| invalid("not a continue token"))?;
    if token.v != TOKEN_VERSION || token.rv <= 0 {
        return Err(invalid("unsupported token"));
    }
    Ok(token)
}

/// The revision a list without a continue token reads at: the latest unless
/// `resourceVersionMatch=Exact` pins one.
fn requested_revision(request: &ApiRequest) -> ApiResult<Option<Revision>> {
    let params = &request.params;
    let parsed = match params.resource_version.as_deref() {
        None => None,
        Some(rv) => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    match params.resource_version_match.as_deref() {
        None | Some("NotOlderThan") => Ok(None),
        Some("Exact") => match parsed {
            Some(revision) if revision > 0 => Ok(Some(revision)),
            _ => Err(ApiError::bad_request("resourceVersionMatch=Exact needs a non-zero resourceVersion")),
        },
        Some(other) => Err(ApiError::bad_request(format!("unsupported resourceVersionMatch: {other:?}"))),
    }
}

/// Reads the objects a list request selects, one page of at most `limit`.
pub async fn list_page(request: &ApiRequest) -> ApiResult<Page> {
    let selection = Selection::from_request(request)?;
    let prefix = request.target.resource.key_prefix(request.target.namespace.as_deref());
    let limit = request.params.limit;
    let (mut start_after, mut revision) = match &request.params.continue_token {
        Some(token) => {
            let token = decode_token(token)?;
            (Some(format!("{prefix}{}", token.start)), Some(token.rv))
        }
        None => (None, requested_revision(request)?),
    };

    let mut items = Vec::new();
    loop {
        let range = RangeRequest { prefix: prefix.clone(), start_after: start_after.clone(), limit, revision };
        let response = request.state.store.range(range).await.map_err(|error| match error {
            StoreError::Compacted { .. } if request.params.continue_token.is_some() => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to continue with an inconsistent list.",
            ),
            other => store_error(other),
        })?;
        revision = Some(response.revision);
        let count = response.kvs.len();
        for (index, kv) in response.kvs.iter().enumerate() {
            let object = objects::from_kv(kv)?;
            if selection.matches(&object) {
                items.push(object);
            }
            let page_full = limit.is_some_and(|limit| items.len() >= limit);
            if page_full {
                let more = index + 1 < count || response.more;
                let token = more.then(|| encode_token(response.revision, &kv.key[prefix.len()..]));
                return Ok(Page { items, revision: response.revision, continue_token: token });
            }
        }
        match response.kvs.last() {
            Some(last) if response.more => start_after = Some(last.key.clone()),
            _ => return Ok(Page { items, revision: response.revision, continue_token: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_token(42, "default/web-1");
        let decoded = decode_token(&token).unwrap();
        assert_eq!(decoded.rv, 42);
        assert_eq!(decoded.start, "default/web-1");
        assert_eq!(decode_token("!!!").unwrap_err().code, 400);
        let not_ours = base64::engine::general_purpose::STANDARD.encode(b"{\"v\":\"x\",\"rv\":1,\"start\":\"\"}");
        assert_eq!(decode_token(&not_ours).unwrap_err().code, 400);
    }
}
