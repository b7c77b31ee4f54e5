//! `/v1/modules`: listing modules, and deploying one (its bytes, or a form
//! with its routes, and its settings in the query).

use hyper::{Request, StatusCode, header};

use super::error::ApiError;
use super::multipart;
use super::query::Query;
use super::respond::{ApiResult, json_response, parse_module_name, read_body};
use super::router::Api;
use super::views::{DeployedView, ModuleView};
use crate::domain::{ModuleName, ModuleSettings};
use crate::triggers::Manifest;

impl Api {
    pub(super) async fn list_modules(&self) -> ApiResult {
        let modules = self.executor().list_modules().await?;
        let routes: Vec<Manifest> = modules
            .iter()
            .map(|m| self.executor().module_routes(&m.name))
            .collect();
        let views: Vec<ModuleView> = modules
            .iter()
            .zip(&routes)
            .map(|(module, routes)| ModuleView::new(module, routes))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "modules": views }),
        ))
    }

    pub(super) async fn get_module(&self, name: &str) -> ApiResult {
        let name = parse_module_name(name)?;
        match self.executor().get_module(&name).await? {
            Some(module) => {
                let routes = self.executor().module_routes(&name);
                Ok(json_response(
                    StatusCode::OK,
                    &ModuleView::new(&module, &routes),
                ))
            }
            None => Err(ApiError::not_found(
                "module_not_found",
                format!("module {name} is not deployed"),
            )),
        }
    }

    /// `PUT /v1/modules/{name}`.
    pub(super) async fn deploy<B>(
        &self,
        name: &str,
        request: Request<B>,
        query: &Query,
    ) -> ApiResult
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let name = parse_module_name(name)?;
        let form = upload_form(&request)?;
        let settings = module_settings(query)?;
        let limit = self.limits().max_upload_bytes;
        let body = read_body(request, self.limits(), (limit, "body_too_large")).await?;
        let (component, manifest) = match form {
            None => (body.to_vec(), Manifest::default()),
            Some(boundary) => upload_parts(&body, &boundary)?,
        };
        self.put_module(name, component, settings, manifest).await
    }

    pub(super) async fn put_module(
        &self,
        name: ModuleName,
        component: Vec<u8>,
        settings: ModuleSettings,
        manifest: Manifest,
    ) -> ApiResult {
        let put = self
            .executor()
            .deploy(name, component, settings, manifest)
            .await?;
        let status = if put.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let routes = self.executor().module_routes(&put.module.name);
        Ok(json_response(
            status,
            &DeployedView::new(&put.module, &routes),
        ))
    }
}

/// Uploads are component bytes (`application/wasm`,
/// `application/octet-stream` or no content type at all), or a
/// `multipart/form-data` form with the component and its routes: then the
/// form's boundary. Any other body is a mistake worth naming.
fn upload_form<B>(request: &Request<B>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    if let Some(boundary) = multipart::boundary(value.to_str().unwrap_or("")) {
        return boundary
            .map(Some)
            .map_err(|e| ApiError::bad_request("invalid_form", e));
    }
    let essence = super::guard::media_type(request.headers()).unwrap_or_default();
    if essence == "application/wasm" || essence == "application/octet-stream" {
        return Ok(None);
    }
    Err(ApiError::with_status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "a module upload is the component's bytes with Content-Type application/wasm (or application/octet-stream), or a multipart/form-data form with parts \"module\" and \"routes\"; not {value:?}"
        ),
    ))
}

/// The component and the routes manifest of a form upload.
fn upload_parts(body: &[u8], boundary: &str) -> Result<(Vec<u8>, Manifest), ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_form", message);
    let mut component = None;
    let mut manifest = None;
    for part in multipart::parse(body, boundary).map_err(invalid)? {
        let slot_taken = match part.name.as_str() {
            "module" => component.replace(part.bytes.to_vec()).is_some(),
            "routes" => manifest
                .replace(
                    Manifest::parse(part.bytes)
                        .map_err(|e| ApiError::bad_request("invalid_routes", e))?,
                )
                .is_some(),
            other => {
                return Err(invalid(format!(
                    "unexpected form part {other:?}; a module upload has the parts \"module\" (the component) and \"routes\" (optional, the JSON routes manifest)"
                )));
            }
        };
        if slot_taken {
            return Err(invalid(format!(
                "the form part {:?} appears twice",
                part.name
            )));
        }
    }
    let component = component.ok_or_else(|| {
        invalid("the form has no part \"module\" with the component's bytes".into())
    })?;
    Ok((component, manifest.unwrap_or_default()))
}

/// A module's settings from the query of its upload:
/// `?max_memory_bytes=N&cpu_slice_ms=N&run_timeout_ms=N&allowed_hosts=A,B&reach=M,N`,
/// each optional.
fn module_settings(query: &Query) -> Result<ModuleSettings, ApiError> {
    const ACCEPTED: &str = "max_memory_bytes, cpu_slice_ms, run_timeout_ms, allowed_hosts, reach";
    let mut settings = ModuleSettings::default();
    for (key, value) in query.pairs() {
        let number = || {
            value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_settings",
                    format!("{key} must be a whole number, got {value:?}"),
                )
            })
        };
        match key {
            "max_memory_bytes" => {
                settings.max_memory_bytes = Some(usize::try_from(number()?).unwrap_or(usize::MAX))
            }
            "cpu_slice_ms" => settings.cpu_slice_ms = Some(number()?),
            "run_timeout_ms" => settings.run_timeout_ms = Some(number()?),
            "allowed_hosts" => {
                settings.allowed_hosts.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned),
                );
            }
            "reach" => {
                settings.reach.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned),
                );
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_settings",
                    format!("unknown module setting {other:?}; accepted: {ACCEPTED}"),
                ));
            }
        }
    }
    Ok(settings)
}
