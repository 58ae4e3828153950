//! Sign-up: JSON for apps (201), an HTML form for browsers. Unknown fields are refused, so a
//! body cannot smuggle in `role` or `scope` (case C24).

use crate::{pages, IdentityState, NewProfile};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{Email, Password, PersonName, Username};
use serde::Deserialize;
use web::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignupRequest {
    username: String,
    password: String,
    given_name: String,
    family_name: String,
    email: String,
}

impl SignupRequest {
    fn parse(self) -> Result<NewProfile, domain::Invalid> {
        Ok(NewProfile {
            username: Username::parse(&self.username)?,
            password: Password::parse(&self.password)?,
            given_name: Some(PersonName::parse("givenName", &self.given_name)?),
            family_name: Some(PersonName::parse("familyName", &self.family_name)?),
            email: Some(Email::parse(&self.email)?),
        })
    }
}

pub async fn signup_page() -> Response {
    pages::signup_page(StatusCode::OK, None)
}

pub async fn create_account(
    State(state): State<IdentityState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return create_from_form(&state, &body).await;
    }
    if !content_type.starts_with("application/json") {
        return ApiError::unsupported_media_type().into_response();
    }
    let result = async {
        let request: SignupRequest = web::json::parse(&body)?;
        let profile = request.parse()?;
        let id = crate::create_account(&state, profile, "person").await?;
        tracing::info!(subject = %id, "account created");
        Ok::<_, ApiError>(id)
    }
    .await;
    match result {
        Ok(id) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "userId": id })),
        )
            .into_response(),
        Err(err) => err.into_response(),
    }
}

async fn create_from_form(state: &IdentityState, body: &[u8]) -> Response {
    let Ok(request) = serde_urlencoded_form(body) else {
        return pages::signup_page(
            StatusCode::BAD_REQUEST,
            Some("The form could not be read; fill it in again."),
        );
    };
    let profile = match request.parse() {
        Ok(profile) => profile,
        Err(invalid) => {
            return pages::signup_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&invalid.to_string()))
        }
    };
    match crate::create_account(state, profile, "person").await {
        Ok(id) => {
            tracing::info!(subject = %id, "account created");
            pages::signup_done_page()
        }
        Err(crate::CreateAccountError::UsernameTaken) => pages::signup_page(
            StatusCode::CONFLICT,
            Some("That username is taken; choose another."),
        ),
        Err(err) => ApiError::from(err).into_response(),
    }
}

fn serde_urlencoded_form(body: &[u8]) -> Result<SignupRequest, ()> {
    serde_urlencoded::from_bytes::<SignupRequest>(body).map_err(|_| ())
}
