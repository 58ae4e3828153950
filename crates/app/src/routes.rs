//! The route table: every route the server answers, with the access it requires. Deny by
//! default: a route is public only when this table says so. The authorisation matrix test
//! calls every route with every kind of token and checks the answers against this table, and
//! another test checks the table lists exactly the routes the code registers.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: discovery, sign-up, login, token, static pages, health.
    Public,
    /// A person's own data: `bank` scope on a person's token.
    Person,
    /// A signed-in person or administrator (`openid`, `bank` or `admin`).
    Account,
    /// Administrators only (`admin`).
    Admin,
    /// The rewards service (`rewards`) or an administrator.
    RewardsOrAdmin,
    /// Another examplebank service's client-credentials token with `standing`.
    ServiceStanding,
    /// The erasure service's client-credentials token with `forget`.
    ServiceForget,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

use Access::{Account, Admin, Person, Public, RewardsOrAdmin, ServiceForget, ServiceStanding};

pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", Public),
    route("GET", "/readyz", Public),
    route("GET", "/metrics", Public),
    route("GET", "/", Public),
    route("GET", "/callback", Public),
    route("GET", "/admin", Public),
    route("GET", "/assets/{file}", Public),
    route("GET", "/openapi.json", Public),
    route("GET", "/.well-known/openid-configuration", Public),
    route("GET", "/identity/v1/jwks", Public),
    route("GET", "/identity/v1/style.css", Public),
    route("GET", "/identity/v1/signup", Public),
    route("POST", "/identity/v1/signup", Public),
    route("GET", "/identity/v1/authorize", Public),
    route("POST", "/identity/v1/authorize", Public),
    route("POST", "/identity/v1/token", Public),
    route("POST", "/identity/v1/revoke", Public),
    route("GET", "/identity/v1/userinfo", Account),
    route("POST", "/identity/v1/userinfo", Account),
    route("POST", "/identity/v1/password", Account),
    route("POST", "/bank/v1/users", Person),
    route("GET", "/bank/v1/users/self", Person),
    route("PUT", "/bank/v1/users/self", Person),
    route("GET", "/bank/v1/users/self/consents", Person),
    route("PUT", "/bank/v1/users/self/consents/{purpose}", Person),
    route("GET", "/bank/v1/users/self/export", Person),
    route("PUT", "/bank/v1/users/self/restriction", Person),
    route("DELETE", "/bank/v1/users/self/restriction", Person),
    route("PUT", "/bank/v1/users/self/objection", Person),
    route("DELETE", "/bank/v1/users/self/objection", Person),
    route("GET", "/bank/v1/users/self/requests", Person),
    route("GET", "/bank/v1/users/self/insights", Person),
    route("POST", "/bank/v1/transactions", Person),
    route("GET", "/bank/v1/transactions", Person),
    route("GET", "/bank/v1/transactions/spending", Person),
    route("GET", "/bank/v1/transactions/{id}", Person),
    route("GET", "/bank/v1/points", Person),
    route("POST", "/bank/v1/points/redemptions", Person),
    route("PUT", "/bank/v1/transactions/reward/{id}", RewardsOrAdmin),
    route("POST", "/bank/v1/transactions/rewards", RewardsOrAdmin),
    route("GET", "/admin/v1/requests", Admin),
    route("GET", "/admin/v1/reward-rules", Admin),
    route("PUT", "/admin/v1/reward-rules/{category}", Admin),
    route("GET", "/admin/v1/outbox", Admin),
    route("GET", "/admin/v1/analytics", Admin),
    route("GET", "/admin/v1/audit", Admin),
    route("PUT", "/admin/v1/accounts/{id}/status", Admin),
    route("GET", "/internal/v1/users/{id}/standing", ServiceStanding),
    route("DELETE", "/internal/v1/users/{id}", ServiceForget),
    route(
        "DELETE",
        "/internal/v1/transactions/people/{id}",
        ServiceForget,
    ),
    route(
        "DELETE",
        "/internal/v1/identity/accounts/{id}",
        ServiceForget,
    ),
    // Destructive routes last, so a matrix walking the table in order keeps its people.
    route("POST", "/bank/v1/users/self/erasure", Person),
    route("DELETE", "/bank/v1/users/self", Person),
];
