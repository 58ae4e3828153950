//! `examplebank demo`: walks the whole journey over real HTTP against a running server, so a
//! deployment can be checked end to end. Prints pseudonymous ids and counts, never secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use reqwest::{header, RequestBuilder, Response, StatusCode, Url};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const CLIENT_ID: &str = "simulator";
const AUTHORIZE: &str = "/identity/v1/authorize";
const TOKEN: &str = "/identity/v1/token";
const PROFILE: &str = "/bank/v1/users/self";
const PEOPLE: usize = 3;
const CHARGES: usize = 60;
const CATEGORIES: &str = "groceries fuel dining coffee transport shopping travel entertainment";
const POLL_EVERY: Duration = Duration::from_millis(200);
const POLL_LIMIT: Duration = Duration::from_secs(30);

/// A thin wrapper over reqwest that knows the base URL.
struct Client {
    http: reqwest::Client,
    base: String,
    redirect_uri: String,
}

impl Client {
    fn new(base_url: &str, ca_cert: Option<&std::path::Path>) -> Result<Self> {
        let base = base_url.trim_end_matches('/').to_owned();
        Url::parse(&base).context("the demo URL is not a valid URL")?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the certificates in {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            if certificates.is_empty() {
                anyhow::bail!("{} holds no PEM certificate", path.display());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build()?;
        let redirect_uri = format!("{base}/callback");
        Ok(Self {
            http,
            base,
            redirect_uri,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(token)
    }

    fn post(&self, path: &str, token: &str) -> RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(token)
    }

    fn form(&self, path: &str, form: &[(&str, &str)]) -> RequestBuilder {
        self.http.post(self.url(path)).form(form)
    }
}

/// One charge the demo makes, with what the server should derive from it.
#[derive(Debug, Clone, PartialEq)]
struct Charge {
    name: String,
    category: &'static str,
    cents: u64,
    points: u64,
}

/// A made-up person. Credentials and tokens stay in memory and are never printed.
struct Person {
    label: String,
    user_id: String,
    username: String,
    password: String,
    access: String,
    refresh: String,
    charges: Vec<Charge>,
}

impl Person {
    fn say(&self, what: impl Display) {
        println!("{}: {what}", self.label);
    }

    fn points(&self) -> u64 {
        self.charges.iter().map(|c| c.points).sum()
    }

    fn spending(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for c in &self.charges {
            *totals.entry(c.category.to_owned()).or_insert(0) += c.cents;
        }
        totals
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChargeBody<'a> {
    transaction_name: &'a str,
    category: &'a str,
    amount: Box<RawValue>,
}

/// Runs the journey for a few made-up people; Err on the first surprise.
pub async fn run(base_url: &str, ca_cert: Option<&std::path::Path>) -> Result<()> {
    let started = Instant::now();
    let client = Client::new(base_url, ca_cert)?;
    let mut people = Vec::new();
    for n in 1..=PEOPLE {
        let person = onboard(&client, n).await;
        people.push(person.with_context(|| format!("person-{n}"))?);
    }
    make_charges(&client, &mut people).await?;
    for person in &people {
        let checked = verify_person(&client, person).await;
        checked.with_context(|| person.label.clone())?;
    }
    let earned: u64 = people.iter().map(Person::points).sum();
    let [first, _, third] = people.as_slice() else {
        bail!("the demo needs exactly {PEOPLE} people");
    };
    let redeemed = redeem_half(&client, first).await;
    let redeemed = redeemed.with_context(|| first.label.clone())?;
    let erased = erase(&client, third).await;
    erased.with_context(|| third.label.clone())?;
    let ms = started.elapsed().as_millis();
    let points = format!("{earned} points earned, {redeemed} redeemed");
    println!("demo ok: {PEOPLE} people, {CHARGES} charges, {points}, {ms} ms");
    Ok(())
}

async fn onboard(client: &Client, n: usize) -> Result<Person> {
    let mut person = signup(client, n).await?;
    login(client, &mut person).await?;
    let register = client.post("/bank/v1/users", &person.access);
    let register = register.json(&json!({ "consentGiven": true }));
    send(register, StatusCode::NO_CONTENT, "register").await?;
    person.say("registered with consent");
    refresh(client, &mut person).await?;
    check_profile(client, &person).await?;
    Ok(person)
}

async fn signup(client: &Client, n: usize) -> Result<Person> {
    let tag: String = uuid::Uuid::new_v4().simple().to_string();
    let tag = tag.get(..8).context("short uuid")?;
    let username = format!("demo-{tag}");
    let password = crypto::secrets::random_token();
    let body = json!({
        "username": username,
        "password": password,
        "givenName": "Demo",
        "familyName": format!("Person{n}"),
        "email": format!("demo-{tag}@example.org"),
    });
    let req = client.http.post(client.url("/identity/v1/signup"));
    let created = send_json(req.json(&body), StatusCode::CREATED, "signup").await?;
    let user_id = str_field(&created, "userId")?.to_owned();
    let label = format!("person-{n}");
    println!("{label}: signed up as user {user_id}");
    let (access, refresh, charges) = (String::new(), String::new(), Vec::new());
    Ok(Person {
        label,
        user_id,
        username,
        password,
        access,
        refresh,
        charges,
    })
}

/// A fresh PKCE pair: (verifier, S256 challenge).
fn pkce_pair() -> (String, String) {
    let verifier = crypto::secrets::random_token();
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

fn authorize_params<'a>(client: &'a Client, challenge: &'a str, state: &'a str) -> Form<'a> {
    vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("scope", "openid bank"),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

type Form<'a> = Vec<(&'a str, &'a str)>;

fn authorize_post(c: &Client, who: &Person, challenge: &str, state: &str) -> RequestBuilder {
    let mut form = authorize_params(c, challenge, state);
    form.push(("username", who.username.as_str()));
    form.push(("password", who.password.as_str()));
    c.form(AUTHORIZE, &form)
}

async fn login(client: &Client, person: &mut Person) -> Result<()> {
    let (verifier, challenge) = pkce_pair();
    let state = crypto::secrets::random_token();
    let page = client.http.get(client.url(AUTHORIZE));
    let page = page.query(&authorize_params(client, &challenge, &state));
    let page = send(page, StatusCode::OK, "login page").await?;
    let html = page.text().await?;
    let has_field = html.contains("name=\"username\"");
    ensure!(has_field, "login page: no username field");
    let req = authorize_post(client, person, &challenge, &state);
    let resp = send(req, StatusCode::SEE_OTHER, "login").await?;
    let code = code_from_redirect(client, &resp, &state)?;
    let form: Form<'_> = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("client_id", CLIENT_ID),
        ("code_verifier", verifier.as_str()),
    ];
    let req = client.form(TOKEN, &form);
    let tokens = send_json(req, StatusCode::OK, "code exchange").await?;
    ensure!(!str_field(&tokens, "id_token")?.is_empty(), "no id_token");
    (person.access, person.refresh) = token_pair(&tokens)?;
    person.say("logged in with PKCE (login page checked)");
    Ok(())
}

fn code_from_redirect(client: &Client, resp: &Response, state: &str) -> Result<String> {
    let location = resp.headers().get(header::LOCATION);
    let location = location.context("login: 303 without Location")?.to_str()?;
    let ours = location.starts_with(&format!("{}?", client.redirect_uri));
    ensure!(ours, "login: redirected away from the redirect_uri");
    let url = Url::parse(location)?;
    let pairs: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    ensure!(!pairs.contains_key("error"), "login: redirect has an error");
    ensure!(pairs.contains_key("iss"), "login: redirect has no iss");
    let same_state = pairs.get("state").is_some_and(|s| s == state);
    ensure!(same_state, "login: state mismatch");
    let code = pairs.get("code").filter(|c| !c.is_empty());
    code.cloned().context("login: redirect has no code")
}

/// Access and refresh token from a token response (never put into error messages).
fn token_pair(body: &Value) -> Result<(String, String)> {
    let bearer = str_field(body, "token_type")?.eq_ignore_ascii_case("bearer");
    ensure!(bearer, "token_type is not Bearer");
    ensure!(u64_field(body, "expires_in")? > 0, "expires_in is 0");
    let access = str_field(body, "access_token")?.to_owned();
    let refresh = str_field(body, "refresh_token")?.to_owned();
    ensure!(!access.is_empty() && !refresh.is_empty(), "empty token");
    Ok((access, refresh))
}

async fn refresh(client: &Client, person: &mut Person) -> Result<()> {
    let form: Form<'_> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", person.refresh.as_str()),
        ("client_id", CLIENT_ID),
    ];
    let req = client.form(TOKEN, &form);
    let body = send_json(req, StatusCode::OK, "refresh").await?;
    let (access, refresh) = token_pair(&body)?;
    ensure!(access != person.access, "refresh: same access token");
    ensure!(refresh != person.refresh, "refresh: not rotated");
    (person.access, person.refresh) = (access, refresh);
    person.say("refresh token rotated");
    Ok(())
}

async fn check_profile(client: &Client, person: &Person) -> Result<()> {
    let req = client.get(PROFILE, &person.access);
    let profile = send_json(req, StatusCode::OK, "profile").await?;
    let user_id = str_field(&profile, "userId")?;
    same(user_id, person.user_id.as_str(), "profile userId")?;
    let consent = profile.get("consentGiven").and_then(Value::as_bool);
    same(consent, Some(true), "consentGiven")?;
    let consents = profile.get("consents").context("profile: no consents")?;
    for purpose in ["rewards", "analytics", "profiling"] {
        let flag = consents.get(purpose).and_then(Value::as_bool);
        ensure!(flag.is_some(), "consents.{purpose} is not a boolean");
    }
    person.say("profile checked with the rotated access token");
    Ok(())
}

/// The `i`-th charge of the deterministic sequence.
fn plan_charge(i: usize) -> Charge {
    let category = CATEGORIES.split(' ').cycle().nth(i).unwrap_or("other");
    let cents = 100 + (i as u64 * 7_919 + 37) % 15_000;
    let points = expected_points(category, cents);
    let name = format!("Demo charge {i}");
    Charge {
        name,
        category,
        cents,
        points,
    }
}

fn expected_points(category: &str, cents: u64) -> u64 {
    let rate = match category {
        "groceries" => 2,
        "fuel" => 3,
        _ => 1,
    };
    cents * rate / 100
}

/// The amount as JSON text, `12.30` or `"12.30"`: no float is ever involved.
fn amount_json(cents: u64, as_number: bool) -> Result<Box<RawValue>> {
    let quote = if as_number { "" } else { "\"" };
    let text = format!("{quote}{}{quote}", format_cents(cents));
    Ok(RawValue::from_string(text)?)
}

async fn make_charges(client: &Client, people: &mut [Person]) -> Result<()> {
    for i in 0..CHARGES {
        let charge = plan_charge(i);
        let person = people.get_mut(i % PEOPLE).context("too few people")?;
        let amount = amount_json(charge.cents, i % 2 == 1)?;
        let (transaction_name, category) = (&*charge.name, charge.category);
        let body = ChargeBody {
            transaction_name,
            category,
            amount,
        };
        let req = client.post("/bank/v1/transactions", &person.access);
        let key = uuid::Uuid::new_v4().to_string();
        let req = req.header("Idempotency-Key", key).json(&body);
        send(req, StatusCode::NO_CONTENT, "charge").await?;
        person.charges.push(charge);
    }
    let all = people.iter().flat_map(|p| &p.charges);
    let kinds = all.map(|c| c.category).collect::<BTreeSet<_>>().len();
    println!("made {CHARGES} charges for {PEOPLE} people in {kinds} categories");
    Ok(())
}

async fn verify_person(client: &Client, person: &Person) -> Result<()> {
    let list = wait_processed(client, person).await?;
    check_transactions(person, &list)?;
    let points = person.points();
    check_points(client, person, points, 0).await?;
    let count = list.len();
    person.say(format!("{count} transactions processed, {points} points"));
    let req = client.get("/bank/v1/transactions/spending", &person.access);
    let body = send_json(req, StatusCode::OK, "spending").await?;
    let mut actual = BTreeMap::new();
    for row in body.as_array().context("spending: not an array")? {
        let category = str_field(row, "category")?.to_owned();
        let cents = parse_cents(str_field(row, "amount")?)?;
        let twice = cents > 0 && actual.insert(category, cents).is_some();
        ensure!(!twice, "spending: a category is listed twice");
    }
    same(&actual, &person.spending(), "spending in cents")?;
    person.say(format!("spending exact in {} categories", actual.len()));
    Ok(())
}

async fn wait_processed(client: &Client, person: &Person) -> Result<Vec<Value>> {
    let deadline = Instant::now() + POLL_LIMIT;
    let made = person.charges.len();
    loop {
        let list = list_transactions(client, &person.access).await?;
        ensure!(list.len() <= made, "more transactions than charges made");
        let is_done = |t: &&Value| t.get("processed") == Some(&json!(true));
        let done = list.iter().filter(is_done).count();
        if done == made {
            return Ok(list);
        }
        let late = Instant::now() >= deadline;
        ensure!(!late, "{done} of {made} processed after 30 s");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The person's transactions; with fewer than 100 there must be no next page.
async fn list_transactions(client: &Client, token: &str) -> Result<Vec<Value>> {
    let req = client.get("/bank/v1/transactions?limit=100", token);
    let resp = send(req, StatusCode::OK, "transactions").await?;
    let paged = resp.headers().contains_key(header::LINK);
    let list: Vec<Value> = resp.json().await.context("transactions: not a list")?;
    ensure!(!paged || list.len() == 100, "short page with a next link");
    Ok(list)
}

fn check_transactions(person: &Person, list: &[Value]) -> Result<()> {
    let by_name = person.charges.iter().map(|c| (c.name.as_str(), c));
    let expected: BTreeMap<&str, &Charge> = by_name.collect();
    let mut seen = BTreeSet::new();
    for tx in list {
        let name = str_field(tx, "transactionName")?;
        let charge = expected.get(name).context("unexpected transaction")?;
        ensure!(seen.insert(name), "{name} listed twice");
        let owner = str_field(tx, "userId")?;
        same(owner, person.user_id.as_str(), "owner")?;
        same(str_field(tx, "category")?, charge.category, "category")?;
        let cents = parse_cents(str_field(tx, "amount")?)?;
        same(cents, charge.cents, "amount in cents")?;
        same(u64_field(tx, "pointsEarned")?, charge.points, "points")?;
    }
    same(seen.len(), expected.len(), "transaction count")
}

async fn check_points(client: &Client, person: &Person, balance: u64, spent: u64) -> Result<()> {
    let req = client.get("/bank/v1/points", &person.access);
    let body = send_json(req, StatusCode::OK, "points").await?;
    same(u64_field(&body, "balance")?, balance, "balance")?;
    same(u64_field(&body, "earned")?, person.points(), "earned")?;
    same(u64_field(&body, "redeemed")?, spent, "redeemed")
}

async fn redeem_half(client: &Client, person: &Person) -> Result<u64> {
    let (total, half) = (person.points(), person.points() / 2);
    ensure!(half > 0, "not enough points to redeem");
    let key = uuid::Uuid::new_v4().to_string();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let req = client.post("/bank/v1/points/redemptions", &person.access);
        let req = req.header("Idempotency-Key", key.as_str());
        let req = req.json(&json!({ "points": half }));
        bodies.push(send_json(req, StatusCode::CREATED, "redemption").await?);
    }
    let [first, again] = bodies.as_slice() else {
        bail!("redemption: missing response")
    };
    ensure!(first == again, "redemption: repeat gave another body");
    ensure!(!str_field(first, "redemptionId")?.is_empty(), "no id");
    same(u64_field(first, "points")?, half, "redeemed points")?;
    same(u64_field(first, "balance")?, total - half, "new balance")?;
    check_points(client, person, total - half, half).await?;
    person.say(format!("redeemed {half} points once (repeat idempotent)"));
    Ok(half)
}

async fn erase(client: &Client, person: &Person) -> Result<()> {
    let req = client.http.delete(client.url(PROFILE));
    let req = req.bearer_auth(&person.access);
    send(req, StatusCode::NO_CONTENT, "erasure request").await?;
    person.say("erasure requested");
    let started = Instant::now();
    loop {
        let resp = client.get(PROFILE, &person.access).send().await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        ensure!(!status.is_server_error(), "profile gave {status}");
        ensure!(started.elapsed() < POLL_LIMIT, "token accepted after 30 s");
        tokio::time::sleep(POLL_EVERY).await;
    }
    let ms = started.elapsed().as_millis();
    person.say(format!("token refused {ms} ms after erasure request"));
    let (_, challenge) = pkce_pair();
    let state = crypto::secrets::random_token();
    let req = authorize_post(client, person, &challenge, &state);
    let resp = send(req, StatusCode::UNAUTHORIZED, "login after erasure").await?;
    let location = resp.headers().get(header::LOCATION);
    ensure!(location.is_none(), "login after erasure: has a Location");
    person.say("login refused after erasure");
    Ok(())
}

/// Sends `req` and fails unless the status is `want`; the error names only the problem title.
async fn send(req: RequestBuilder, want: StatusCode, what: &str) -> Result<Response> {
    let resp = req.send().await;
    let resp = resp.with_context(|| format!("{what}: request failed"))?;
    let got = resp.status();
    if got == want {
        return Ok(resp);
    }
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let title = body.get("title").and_then(Value::as_str).unwrap_or("-");
    bail!("{what}: expected HTTP {want}, got {got} ({title})")
}

async fn send_json(req: RequestBuilder, want: StatusCode, what: &str) -> Result<Value> {
    let body = send(req, want, what).await?.json().await;
    body.with_context(|| format!("{what}: body is not JSON"))
}

/// Fails unless `got == want`; only for values that are safe to print.
fn same<T: PartialEq + Debug>(got: T, want: T, what: &str) -> Result<()> {
    ensure!(got == want, "{what}: got {got:?}, expected {want:?}");
    Ok(())
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    let field = v.get(key).and_then(Value::as_str);
    field.with_context(|| format!("{key} is missing or not a string"))
}

fn u64_field(v: &Value, key: &str) -> Result<u64> {
    let field = v.get(key).and_then(Value::as_u64);
    field.with_context(|| format!("{key} is missing or not a whole number"))
}

fn pkce_challenge(verifier: &str) -> String {
    crypto::b64::encode(&crypto::secrets::sha256(verifier.as_bytes()))
}

fn format_cents(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Parses a non-negative decimal with at most two decimals ("12", "12.3", "12.34") into cents.
fn parse_cents(text: &str) -> Result<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    ensure!(digits(whole), "amount {text:?} is not a decimal");
    let frac_cents = match frac {
        None => 0,
        Some(f) if digits(f) && f.len() == 1 => f.parse::<u64>()? * 10,
        Some(f) if digits(f) && f.len() == 2 => f.parse::<u64>()?,
        Some(_) => bail!("amount {text:?} has a bad fraction"),
    };
    let cents = whole.parse::<u64>()?.checked_mul(100);
    let cents = cents.and_then(|c| c.checked_add(frac_cents));
    cents.with_context(|| format!("amount {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_round_trip() {
        for cents in [0, 1, 9, 10, 99, 100, 1234, 5_000_000] {
            assert_eq!(parse_cents(&format_cents(cents)).ok(), Some(cents));
        }
        assert_eq!(format_cents(1205), "12.05");
        assert_eq!(parse_cents("7").ok(), Some(700));
        assert_eq!(parse_cents("7.5").ok(), Some(750));
    }

    #[test]
    fn bad_amounts_are_refused() {
        let bad = "|.5|1.|1.234|-1|+1|1e3|1,5| 1|1.-5|99999999999999999999";
        for text in bad.split('|') {
            assert!(parse_cents(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn pkce_challenge_shape() {
        // Known answer from RFC 7636, appendix B.
        let known = pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(known, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let (verifier, challenge) = pkce_pair();
        assert_eq!((verifier.len(), challenge.len()), (43, 43));
        assert!(crypto::secrets::pkce_s256_matches(&verifier, &challenge));
        let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        assert!(challenge.chars().all(url_safe));
    }

    #[test]
    fn plan_covers_categories_and_limits() {
        let plan: Vec<Charge> = (0..CHARGES).map(plan_charge).collect();
        let categories: BTreeSet<&str> = plan.iter().map(|c| c.category).collect();
        assert!(categories.len() >= 6);
        assert!(plan.iter().all(|c| c.cents > 0 && c.cents <= 5_000_000));
        assert_eq!(plan_charge(7), plan_charge(7));
    }

    #[test]
    fn points_follow_the_default_rates() {
        assert_eq!(expected_points("groceries", 1234), 24);
        assert_eq!(expected_points("fuel", 1299), 38);
        assert_eq!(expected_points("coffee", 99), 0);
        assert_eq!(expected_points("travel", 15_050), 150);
    }

    #[test]
    fn amounts_are_sent_verbatim() {
        let body = |as_number| {
            let amount = amount_json(1230, as_number).ok()?;
            let (transaction_name, category) = ("t", "fuel");
            let charge = ChargeBody {
                transaction_name,
                category,
                amount,
            };
            serde_json::to_string(&charge).ok()
        };
        let number = r#"{"transactionName":"t","category":"fuel","amount":12.30}"#;
        assert_eq!(body(true).as_deref(), Some(number));
        let string = r#"{"transactionName":"t","category":"fuel","amount":"12.30"}"#;
        assert_eq!(body(false).as_deref(), Some(string));
    }
}
