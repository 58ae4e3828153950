#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Forged and malformed access tokens against GET /bank/v1/users/self: every one is a 401
//! problem with a Bearer challenge, while a control token made the same way but valid works.

mod common;

use common::{
    assert_unauthorized, claims_of, craft, dalek, ed25519, header_of, server_header, server_signed,
};
use examplebank_testkit::TestApp;
use hmac::{Hmac, Mac as _};
use http::{HeaderValue, Method, Request, StatusCode};
use serde_json::{json, Value};

const SELF: &str = "/bank/v1/users/self";

async fn refused(app: &TestApp, token: &str, case: &str) {
    assert_unauthorized(app.get(SELF, token).await, case);
}

async fn accepted(app: &TestApp, token: &str, case: &str) {
    let response = app.get(SELF, token).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{case}: {}",
        response.text()
    );
}

fn b64_json(value: &Value) -> String {
    crypto::b64::encode(value.to_string().as_bytes())
}

fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

fn now(app: &TestApp) -> i64 {
    use domain::Clock as _;
    app.clock.now_secs()
}

fn hmac_sha256(key: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    move |input| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

fn hmac_sha512(key: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    move |input| {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

async fn c1_alg_none_tokens_are_refused(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    accepted(&app, token, "the real token").await;
    let (_, payload, signature) = parts(token);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let mut header = header_of(token);
        header["alg"] = json!(alg);
        let h = b64_json(&header);
        refused(
            &app,
            &format!("{h}.{payload}."),
            &format!("{alg}, empty signature"),
        )
        .await;
        refused(
            &app,
            &format!("{h}.{payload}.{signature}"),
            &format!("{alg}, original signature"),
        )
        .await;
        let bare = b64_json(&json!({ "alg": alg }));
        refused(
            &app,
            &format!("{bare}.{payload}."),
            &format!("{alg} only, empty signature"),
        )
        .await;
        refused(
            &app,
            &format!("{bare}.{payload}.{signature}"),
            &format!("{alg} only, original signature"),
        )
        .await;
    }
    // Without any alg at all.
    let mut header = header_of(token);
    header.as_object_mut().unwrap().remove("alg");
    refused(
        &app,
        &format!("{}.{payload}.{signature}", b64_json(&header)),
        "no alg",
    )
    .await;
}

async fn c2_hs256_tokens_keyed_with_the_public_key_are_refused(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    let claims = claims_of(token);
    let active = &app.services.signing.current().active().clone();
    let public = active.verifying_key().to_bytes();
    let served = app
        .send(
            Request::builder()
                .uri("/identity/v1/jwks")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    let jwks: Value = served.json();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == active.kid())
        .unwrap()
        .clone();
    let x = jwk["x"].as_str().unwrap().to_owned();
    let jwk_text = jwk.to_string();
    let jwks_text = served.text();
    let secrets: [(&str, &[u8]); 4] = [
        ("public key bytes", &public),
        ("JWKS x string", x.as_bytes()),
        ("JWK JSON text", jwk_text.as_bytes()),
        ("JWKS document text", jwks_text.as_bytes()),
    ];
    for (what, secret) in secrets {
        for typ in ["at+jwt", "JWT"] {
            let header = json!({ "alg": "HS256", "typ": typ, "kid": active.kid() });
            refused(
                &app,
                &craft(&header, &claims, hmac_sha256(secret)),
                &format!("HS256 with {what}, typ {typ}"),
            )
            .await;
        }
        let header = json!({ "alg": "HS512", "typ": "at+jwt", "kid": active.kid() });
        refused(
            &app,
            &craft(&header, &claims, hmac_sha512(secret)),
            &format!("HS512 with {what}"),
        )
        .await;
        // The MAC under the EdDSA label is no signature either.
        refused(
            &app,
            &craft(&server_header(&app), &claims, hmac_sha256(secret)),
            &format!("EdDSA label, MAC with {what}"),
        )
        .await;
    }
    // Control: the same claims, really signed with the server's key, are accepted.
    accepted(
        &app,
        &server_signed(&app, &server_header(&app), &claims),
        "control",
    )
    .await;
}

async fn c4_tokens_that_bring_their_own_key_are_refused(app: TestApp) {
    let person = app.person().await;
    let claims = claims_of(person.token());
    let server_kid = &app
        .services
        .signing
        .current()
        .active()
        .clone()
        .kid()
        .to_owned();
    let attacker = crypto::jws::SigningKey::generate();
    let attacker_key = dalek(&attacker);
    let server_key = dalek(&app.services.signing.current().active().clone());

    // A listener nobody should ever connect to: if the server fetched a key URL, the
    // connection would be waiting in its backlog by the time the response arrived.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let watched = format!("http://{}/jwks.json", listener.local_addr().unwrap());

    for kid in [Some(attacker.kid()), Some(server_kid.as_str()), None] {
        let mut header = json!({ "alg": "EdDSA", "typ": "at+jwt", "jwk": attacker.public_jwk() });
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        refused(
            &app,
            &craft(&header, &claims, ed25519(&attacker_key)),
            &format!("jwk header, kid {kid:?}"),
        )
        .await;
    }
    for (name, url) in [
        ("jku", "http://127.0.0.1:9/"),
        ("x5u", "http://127.0.0.1:9/"),
        ("jku", watched.as_str()),
        ("x5u", watched.as_str()),
    ] {
        for kid in [attacker.kid(), server_kid.as_str()] {
            let mut header = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid });
            header[name] = json!(url);
            refused(
                &app,
                &craft(&header, &claims, ed25519(&attacker_key)),
                &format!("{name} {url}, kid {kid}"),
            )
            .await;
        }
    }
    // The key-bringing headers are refused even on a token the server's own key signed.
    for (name, value) in [
        ("jwk", attacker.public_jwk()),
        ("jwk", app.services.signing.current().active().public_jwk()),
        ("jku", json!(watched)),
        ("x5u", json!(watched)),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
    ] {
        let mut header = server_header(&app);
        header[name] = value;
        refused(
            &app,
            &craft(&header, &claims, ed25519(&server_key)),
            &format!("server-signed with {name}"),
        )
        .await;
    }
    // An attacker key under the server's kid, with no extra header, fails the signature.
    refused(
        &app,
        &craft(&server_header(&app), &claims, ed25519(&attacker_key)),
        "attacker key, server kid",
    )
    .await;

    match listener.accept() {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the server fetched a key URL (connection from {peer})"),
        Err(err) => panic!("listener failed: {err}"),
    }
    accepted(
        &app,
        &craft(&server_header(&app), &claims, ed25519(&server_key)),
        "control",
    )
    .await;
}

async fn c7_time_claims_are_enforced(app: TestApp) {
    let person = app.person().await;
    let mut base = claims_of(person.token());
    let now = now(&app);
    base["iat"] = json!(now);
    base["nbf"] = json!(now);
    base["exp"] = json!(now + 600);
    let header = server_header(&app);
    accepted(&app, &server_signed(&app, &header, &base), "control").await;

    let with = |name: &str, value: Value| {
        let mut claims = base.clone();
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let cases = [
        ("nbf one hour ahead", with("nbf", json!(now + 3600))),
        ("exp missing", without("exp")),
        ("exp in the past", with("exp", json!(now - 60))),
        ("exp now", with("exp", json!(now - 5))),
        ("exp as text", with("exp", json!((now + 600).to_string()))),
        ("exp fractional", with("exp", json!(now as f64 + 600.5))),
        ("iat one hour ahead", with("iat", json!(now + 3600))),
        ("iat missing", without("iat")),
        ("nbf as text", with("nbf", json!(now.to_string()))),
    ];
    for (case, claims) in cases {
        refused(&app, &server_signed(&app, &header, &claims), case).await;
    }
}

async fn access_tokens_expire_after_their_lifetime(app: TestApp) {
    let person = app.person().await;
    accepted(&app, person.token(), "fresh").await;
    app.clock.advance_secs(850);
    accepted(&app, person.token(), "before expiry").await;
    app.clock.advance_secs(60);
    refused(&app, person.token(), "after expiry").await;
}

async fn wrong_issuer_audience_or_type_is_refused(app: TestApp) {
    let person = app.person().await;
    let base = claims_of(person.token());
    let header = server_header(&app);
    accepted(&app, &server_signed(&app, &header, &base), "control").await;

    let with = |name: &str, value: Option<Value>| {
        let mut claims = base.clone();
        match value {
            Some(value) => claims[name] = value,
            None => {
                claims.as_object_mut().unwrap().remove(name);
            }
        }
        claims
    };
    let cases = [
        ("other issuer", with("iss", Some(json!("http://evil.test")))),
        (
            "issuer with slash",
            with("iss", Some(json!("http://examplebank.test/"))),
        ),
        ("issuer missing", with("iss", None)),
        (
            "issuer as array",
            with("iss", Some(json!(["http://examplebank.test"]))),
        ),
        ("other audience", with("aud", Some(json!("other-api")))),
        (
            "other audience list",
            with("aud", Some(json!(["other-api", "simulator"]))),
        ),
        (
            "audience in other case",
            with("aud", Some(json!("EXAMPLEBANK"))),
        ),
        ("audience missing", with("aud", None)),
        ("subject missing", with("sub", None)),
        ("scope missing", with("scope", None)),
        (
            "unknown scope",
            with("scope", Some(json!("openid bank superuser"))),
        ),
        ("client missing", with("client_id", None)),
        (
            "unknown session",
            with("sid", Some(json!(uuid::Uuid::new_v4().to_string()))),
        ),
    ];
    for (case, claims) in cases {
        refused(&app, &server_signed(&app, &header, &claims), case).await;
    }
    for typ in [
        Some("JWT"),
        Some("jwt"),
        Some("id_token+jwt"),
        Some(""),
        None,
    ] {
        let mut header = server_header(&app);
        match typ {
            Some(typ) => header["typ"] = json!(typ),
            None => {
                header.as_object_mut().unwrap().remove("typ");
            }
        }
        refused(
            &app,
            &server_signed(&app, &header, &base),
            &format!("typ {typ:?}"),
        )
        .await;
    }
    // The ID token is signed by the same key but is not an access token.
    let id_token = person.tokens.id_token.as_deref().expect("id_token");
    refused(&app, id_token, "id token as access token").await;
}

async fn tampered_tokens_are_refused(app: TestApp) {
    let person = app.person().await;
    let other = app.person().await;
    accepted(&app, other.token(), "the other person's own token").await;
    let token = person.token();
    let (h, _, signature) = parts(token);
    let claims = claims_of(token);

    let with_payload = |changes: &[(&str, Value)]| {
        let mut c = claims.clone();
        for (name, value) in changes {
            c[*name] = value.clone();
        }
        format!("{h}.{}.{signature}", b64_json(&c))
    };
    refused(
        &app,
        &with_payload(&[("sub", json!(other.id))]),
        "subject swapped",
    )
    .await;
    refused(
        &app,
        &with_payload(&[
            ("sub", json!(other.id)),
            ("sid", claims_of(other.token())["sid"].clone()),
        ]),
        "subject and session swapped",
    )
    .await;
    refused(
        &app,
        &with_payload(&[("scope", json!("openid bank admin"))]),
        "admin scope added",
    )
    .await;
    refused(
        &app,
        &with_payload(&[("exp", json!(claims["exp"].as_i64().unwrap() + 86_400))]),
        "exp extended",
    )
    .await;

    // The same claims with whitespace added: different bytes, so the signature no longer fits.
    let spaced = crypto::b64::encode(format!(" {claims}").as_bytes());
    refused(
        &app,
        &format!("{h}.{spaced}.{signature}"),
        "payload re-encoded",
    )
    .await;

    let mut sig_bytes = crypto::b64::decode(&signature).unwrap();
    sig_bytes[10] ^= 0x01;
    refused(
        &app,
        &format!("{h}.{}.{}", parts(token).1, crypto::b64::encode(&sig_bytes)),
        "signature bit flipped",
    )
    .await;
    let (_, _, other_sig) = parts(other.token());
    refused(
        &app,
        &format!("{h}.{}.{other_sig}", parts(token).1),
        "someone else's signature",
    )
    .await;

    let mut header = header_of(token);
    header["kid"] = json!("unknown-kid");
    refused(
        &app,
        &format!("{}.{}.{signature}", b64_json(&header), parts(token).1),
        "unknown kid",
    )
    .await;
    header["kid"] = json!(null);
    refused(
        &app,
        &format!("{}.{}.{signature}", b64_json(&header), parts(token).1),
        "null kid",
    )
    .await;

    // The untampered token still works, so the refusals above were about the changes.
    accepted(&app, token, "untampered").await;
}

async fn garbage_tokens_are_refused(app: TestApp) {
    let person = app.person().await;
    let token = person.token().to_owned();
    let long = format!("{token}{}", "A".repeat(9000));
    let padded = format!("{token}==");
    let extra = format!("{token}.x");
    let standard_b64 = token.replace('-', "+").replace('_', "/");
    let cases = [
        "x",
        "abc",
        "a.b",
        "a.b.c",
        "..",
        "...",
        "null",
        "{}",
        "e30.e30.",
        "e30.e30.e30",
        long.as_str(),
        padded.as_str(),
        extra.as_str(),
        "%00%00%00",
    ];
    for case in cases {
        refused(&app, case, &format!("garbage {:.40}", case)).await;
    }
    if standard_b64 != token {
        refused(&app, &standard_b64, "standard alphabet").await;
    }
    accepted(&app, &token, "control").await;
}

async fn with_auth(app: &TestApp, values: Vec<HeaderValue>) -> examplebank_testkit::TestResponse {
    common::get_with_authorization(app, SELF, &values).await
}

async fn the_authorization_header_must_be_one_bearer_token(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    assert_unauthorized(with_auth(&app, vec![]).await, "missing header");
    assert_unauthorized(
        with_auth(&app, vec![bearer.clone(), bearer.clone()]).await,
        "duplicated header",
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", person.username, person.password));
    assert_unauthorized(
        with_auth(
            &app,
            vec![HeaderValue::from_str(&format!("Basic {basic}")).unwrap()],
        )
        .await,
        "Basic scheme",
    );
    assert_unauthorized(
        with_auth(
            &app,
            vec![HeaderValue::from_str(&format!("Basic {token}")).unwrap()],
        )
        .await,
        "token under Basic",
    );
    assert_unauthorized(
        with_auth(
            &app,
            vec![HeaderValue::from_str(&format!("Token {token}")).unwrap()],
        )
        .await,
        "Token scheme",
    );
    assert_unauthorized(
        with_auth(&app, vec![HeaderValue::from_static("Bearer")]).await,
        "scheme only",
    );
    assert_unauthorized(
        with_auth(&app, vec![HeaderValue::from_static("Bearer ")]).await,
        "empty token",
    );
    assert_unauthorized(
        with_auth(&app, vec![HeaderValue::from_str(token).unwrap()]).await,
        "no scheme",
    );
    assert_unauthorized(
        with_auth(
            &app,
            vec![HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()],
        )
        .await,
        "not text",
    );
    // The scheme name is case-insensitive (RFC 9110), and the token still has to be valid.
    let lower = HeaderValue::from_str(&format!("bearer {token}")).unwrap();
    let response = with_auth(&app, vec![lower]).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let response = app.call(Method::GET, SELF, Some(token), None).await;
    assert_eq!(response.status, StatusCode::OK);
}

examplebank_testkit::both_backends!(
    c1_alg_none_tokens_are_refused,
    c2_hs256_tokens_keyed_with_the_public_key_are_refused,
    c4_tokens_that_bring_their_own_key_are_refused,
    c7_time_claims_are_enforced,
    access_tokens_expire_after_their_lifetime,
    wrong_issuer_audience_or_type_is_refused,
    tampered_tokens_are_refused,
    garbage_tokens_are_refused,
    the_authorization_header_must_be_one_bearer_token,
);
