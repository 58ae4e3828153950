//! The provider's own server-rendered pages: login, sign-up and errors. Every value is
//! escaped; there is no script, so the strict Content-Security-Policy holds.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use web::html::escape;

pub const STYLE: &str = include_str!("identity.css");

pub fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · examplebank</title>\
         <link rel=\"stylesheet\" href=\"/identity/v1/style.css\"></head>\
         <body><main class=\"card\"><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Cannot continue",
        &format!("<p role=\"alert\">{}</p>", escape(message)),
    )
}

/// The login form. `hidden` carries the authorization request through the POST.
pub fn login_page(status: StatusCode, hidden: &[(&str, &str)], error: Option<&str>) -> Response {
    let mut fields = String::new();
    for (name, value) in hidden {
        fields.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        ));
    }
    let alert = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{alert}<form method=\"post\" action=\"/identity/v1/authorize\">{fields}\
         <label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p>New here? <a href=\"/identity/v1/signup\">Create an account</a>.</p>"
    );
    page(status, "Sign in to examplebank", &body)
}

pub fn signup_page(status: StatusCode, error: Option<&str>) -> Response {
    let alert = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{alert}<form method=\"post\" action=\"/identity/v1/signup\">\
         <label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required minlength=\"3\" maxlength=\"64\">\
         <label for=\"password\">Password (8 to 256 characters)</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required minlength=\"8\" maxlength=\"256\">\
         <label for=\"givenName\">Given name</label>\
         <input id=\"givenName\" name=\"givenName\" autocomplete=\"given-name\" required>\
         <label for=\"familyName\">Family name</label>\
         <input id=\"familyName\" name=\"familyName\" autocomplete=\"family-name\" required>\
         <label for=\"email\">E-mail</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required>\
         <button type=\"submit\">Create account</button></form>\
         <p>Your name and e-mail are stored encrypted with a key of your own, which is destroyed \
         when you ask us to erase your data.</p>"
    );
    page(status, "Create your examplebank account", &body)
}

pub fn signup_done_page() -> Response {
    page(
        StatusCode::CREATED,
        "Account created",
        "<p>Your account is ready. Go back to the app and sign in.</p><p><a href=\"/\">Open the app</a></p>",
    )
}
