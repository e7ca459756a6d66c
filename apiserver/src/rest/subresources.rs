//! Subresources beyond status: `pods/binding` and `scale` (as autoscaling/v1).

use axum::http::StatusCode;
use axum::response::Response;
use super::write::{apply_patch, store_update, UpdateError};
use super::{get_object, json_response, ApiRequest};
use crate::patch::{PatchType, PATCH_MEDIA_TYPES};
use crate::resources::ResourceType;
use crate::status::{success_status, ApiError, ApiResult, QualifiedResource};
use crate::model::{self, Write};
use crate::objects;

const ATTEMPTS: usize = 5;

/// `POST pods/NAME/binding`: assigns the pod to a node, once.
pub async fn bind(request: ApiRequest) -> ApiResult<Response> {
    let binding = request.body_object()?;
    let name = request.target.object_name().to_string();
    let binding_resource = QualifiedResource::new("", "pods/binding");
    for _ in 0..ATTEMPTS {
        let (kv, current) = get_object(&request, &name).await?;
        let mut bound = current.clone();
        model::bind(&mut bound, &binding)?;
        match store_update(&request, &kv, &current, bound, Write::System).await {
            Ok(_) => {
                let status = success_status(&binding_resource, &name, objects::uid(&current));
                return Ok(json_response(StatusCode::CREATED, &status));
            }
            Err(UpdateError::Raced) => continue,
            Err(error) => return Err(error.into_api_for(&binding_resource, &name)),
        }
    }
    Err(ApiError::modified(&binding_resource, &name))
}

/// GET, PUT and PATCH of `scale`, an autoscaling/v1 `Scale` view of the object.
pub async fn scale(verb: &str, request: ApiRequest) -> ApiResult<Response> {
    let name = request.target.object_name().to_string();
    let resource = request.target.resource.clone();
    if verb == "get" {
        let (_, current) = get_object(&request, &name).await?;
        return Ok(json_response(StatusCode::OK, &model::scale_of(&current)?));
    }
    let patch_type = if verb == "patch" {
        Some(
            PatchType::from_content_type(&request.content_type())
                .filter(|t| *t != PatchType::Apply)
                .ok_or_else(|| ApiError::unsupported_media_type(PATCH_MEDIA_TYPES))?,
        )
    } else {
        None
    };
    let body = request.body_bytes();
    let scale_kind = ResourceType { group: "autoscaling".into(), kind: "Scale".into(), ..resource.clone() };
    for _ in 0..ATTEMPTS {
        let (kv, current) = get_object(&request, &name).await?;
        let desired = match patch_type {
            Some(patch_type) => apply_patch(&scale_kind, &name, patch_type, &model::scale_of(&current)?, &body)?,
            None => request.body_object()?,
        };
        let wanted_version = objects::resource_version(&desired);
        if !wanted_version.is_empty() && wanted_version != objects::resource_version(&current) {
            return Err(ApiError::modified(&resource.qualified(), &name));
        }
        let mut scaled = current.clone();
        model::apply_scale(&mut scaled, &desired)?;
        match store_update(&request, &kv, &current, scaled, Write::Update(&current)).await {
            Ok(saved) => return Ok(json_response(StatusCode::OK, &model::scale_of(&saved)?)),
            Err(UpdateError::Raced) => continue,
            Err(error) => return Err(error.into_api_for(&resource.qualified(), &name)),
        }
    }
    Err(ApiError::modified(&resource.qualified(), &name))
}
