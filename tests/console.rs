//! The admin console, on both databases: nothing under `/console/` but the sign-in form opens
//! without a session, and no form is taken from another site or without its session's token
//! (plain HTTP); in a real browser (Debian's chromium, headless), an admin signs in with an API
//! key and runs the mapping tester on a SAML response signed by xmlsec1, and sees each
//! decision with its reason and the matched value. Screenshots go to
//! `target/console-screenshots/`.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
#[path = "support/sources.rs"]
mod sources;
mod support;

use base64::Engine as _;
use browser::Browser;
use idsync::login::{self, VerifiedIdentity};
use idsync::model::access::permissions_digest;
use idsync::store::{
    Actor, AuditQuery, AuditStore, ConfigChange, ConfigStore, MembershipStore, SqlStore,
};
use idsync::sync::reevaluate::{reevaluate_provider, ReevaluateRequest};
use saml::ResponseSpec;
use sources::{oidc_env, saml_env, SAML_PROVIDER};
use support::Db;

fn http() -> reqwest::Client {
    support::http::cookie_client()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The hidden form token on a console page.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn nothing_opens_without_a_session_and_no_form_crosses_sites(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let client = http();
    for path in [
        "/console/",
        "/console/mappings/test",
        "/console/assets/console.css",
    ] {
        let answer = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 303, "{path}");
        assert_eq!(location(&answer), "/console/login", "{path}");
    }
    let answer = client
        .post(app.url("/console/mappings/test"))
        .form(&[
            ("provider", SAML_PROVIDER),
            ("sample", "claims"),
            ("text", "{}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(location(&answer), "/console/login");

    // The sign-in form opens, with no stylesheet to fetch; a wrong key and a SCIM token are
    // refused on it.
    let answer = client.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let csp = answer.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!answer.text().await.unwrap().contains("console.css"));
    let answer = client
        .post(app.url("/console/login"))
        .form(&[("key", "idsync_not.a-key")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert!(answer.headers().get("set-cookie").is_none());

    // Signed in: the pages open; a form without its token, or posted from another origin, is
    // refused and runs nothing.
    let key = app.api_key("console-admin", &["Auth View"]).await;
    let answer = client
        .post(app.url("/console/login"))
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(&key), "the key is sealed in the cookie");
    let page = client
        .get(app.url("/console/mappings/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    let css = client
        .get(app.url("/console/assets/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status().as_u16(), 200);
    let claims = r#"{"sub": "carol", "groups": ["engineering"]}"#;
    let form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("provider", SAML_PROVIDER.to_owned()),
            ("sample", "claims".to_owned()),
            ("text", claims.to_owned()),
        ]
    };
    let answer = client
        .post(app.url("/console/mappings/test"))
        .form(&form(""))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let answer = client
        .post(app.url("/console/mappings/test"))
        .header("origin", "https://evil.example")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let answer = client
        .post(app.url("/console/mappings/test"))
        .header("origin", app.url(""))
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let html = answer.text().await.unwrap();
    assert!(
        html.contains("<mark class=\"matched\">engineering</mark>"),
        "{html}"
    );

    // Signing out ends the session.
    let answer = client
        .post(app.url("/console/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let answer = client
        .get(app.url("/console/mappings/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
}

async fn the_mapping_tester_in_a_browser(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let key = app.api_key("console-admin", &["Auth View"]).await;
    let now = idsync::clock::now_secs();
    let spec = ResponseSpec::valid(&env.sp, &env.acs, now);
    let request_id = spec.in_response_to.clone().expect("a request id");
    let xml = env.idp.sign(&spec);
    let response = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());

    let browser = Browser::start().await;
    browser.goto(&app.url("/console/mappings/test")).await;
    assert_eq!(browser.current_path().await, "/console/login");
    browser
        .screenshot(&format!("{db:?}-sign-in").to_lowercase())
        .await;
    browser.fill("#key", &key).await;
    browser.click("form button[type=submit]").await;
    browser.wait_for_path("/console/mappings/test").await;

    browser.select("#provider", SAML_PROVIDER).await;
    browser.select("#sample", "saml_response").await;
    browser.fill("#text", &response).await;
    browser.fill("#binding", &request_id).await;
    browser.click("form.tester button[type=submit]").await;
    browser.find("section.report").await;
    let source = browser.source().await;
    assert!(source.contains("User alice@example.com"), "{source}");
    let added = browser.find_all("table.decisions tr.add").await;
    assert_eq!(added.len(), 1, "{source}");
    let row = added[0].text().await.unwrap();
    assert!(row.contains("Engineering") && row.contains("add"), "{row}");
    assert_eq!(browser.text("tr.add mark.matched").await, "engineering");
    let out = browser.find_all("table.decisions tr.out").await;
    assert!(
        !out.is_empty(),
        "Domain Admins is not matched and shown so: {source}"
    );
    assert!(browser
        .text("table.permissions")
        .await
        .contains("Images View"));
    browser
        .screenshot(&format!("{db:?}-mapping-tester").to_lowercase())
        .await;
    browser.close().await;
}

/// Signs `user` in through the SAML provider with these group values (the login's own steps,
/// as after a verified response).
async fn saml_sign_in(store: &SqlStore, user: &str, groups: &[&str]) {
    let identity = VerifiedIdentity {
        provider: SAML_PROVIDER.into(),
        username: user.into(),
        group_values: groups.iter().map(|g| g.to_string()).collect(),
        attributes: serde_json::json!({ "groups": groups }),
    };
    let signer = support::signer(store).await;
    login::login(store, &signer, &identity, idsync::clock::now_ms())
        .await
        .expect("sign-in");
}

/// A browser signed into the console with `key`.
async fn signed_in_browser(app: &support::http::TestApp, key: &str) -> Browser {
    let browser = Browser::start().await;
    browser.goto(&app.url("/console/login")).await;
    browser.fill("#key", key).await;
    browser.click("form button[type=submit]").await;
    browser.wait_for_path("/console/mappings/test").await;
    browser
}

/// Twelve users signed in through the SAML provider in Engineering, then the Engineering
/// mapping changed so that none matches: the re-evaluation stops at the removal threshold
/// (10). The stopped run's id.
async fn a_run_stopped_at_the_threshold(store: &SqlStore) -> String {
    let users: Vec<String> = (0..12).map(|i| format!("user{i:02}@example.com")).collect();
    for user in &users {
        saml_sign_in(store, user, &["engineering"]).await;
    }
    let provider = store.provider(SAML_PROVIDER).await.unwrap().provider;
    let mapping = store
        .mappings_of_provider(provider.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.group.name == "Engineering")
        .unwrap();
    store
        .apply_config(
            &[ConfigChange::UpdateMapping {
                id: mapping.id,
                provider: SAML_PROVIDER.into(),
                group: "Engineering".into(),
                assign_all_users: false,
                attributes: vec!["nobody-has-this".into()],
            }],
            &Actor::new("user:admin"),
            &permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
    let stopped = reevaluate_provider(
        store,
        &ReevaluateRequest {
            provider: SAML_PROVIDER.into(),
            proposed: Vec::new(),
            dry_run: false,
            confirm: None,
            actor: Actor::new("user:admin"),
            confirmation_max_age: None,
        },
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(
        stopped.run.status, "needs_confirmation",
        "{:?}",
        stopped.run
    );
    stopped.run.id
}

async fn engineering_members(store: &SqlStore) -> usize {
    let mut members = 0;
    for i in 0..12 {
        let user = store
            .user_by_name(&format!("user{i:02}@example.com"))
            .await
            .unwrap()
            .unwrap();
        members += store
            .memberships(user.id)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.group.name == "Engineering")
            .count();
    }
    members
}

/// The text of a page the client opens.
async fn page_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The text of the page a form post answers with.
async fn post_text(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    client
        .post(url)
        .form(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Signs a plain HTTP client into the console with `key`: the client (with the session
/// cookie).
async fn console_client(app: &support::http::TestApp, key: &str) -> reqwest::Client {
    let client = http();
    let answer = client
        .post(app.url("/console/login"))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    client
}

async fn a_stopped_run_reviewed_and_confirmed_in_a_browser(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let run = a_run_stopped_at_the_threshold(app.store()).await;
    assert_eq!(engineering_members(app.store()).await, 12);

    // Someone who may look but not change sees the diff and no confirm button.
    let viewer = app
        .api_key("console-viewer", &["Auth View", "Reports View"])
        .await;
    let client = console_client(app, &viewer).await;
    let page = page_text(&client, &app.url(&format!("/console/runs/{run}"))).await;
    assert!(page.contains("Diff by group"), "{page}");
    assert!(!page.contains("class=\"confirm\""), "{page}");
    assert!(!page.contains(&viewer), "no secret on the page");
    // Nor may it confirm by posting the form itself.
    let csrf = csrf_of(&page);
    let answer = post_text(
        &client,
        &app.url(&format!("/console/runs/{run}/confirm")),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert!(answer.contains("Not applied"), "{answer}");
    assert!(answer.contains("Auth Modify"), "{answer}");
    assert_eq!(engineering_members(app.store()).await, 12);

    let admin = app
        .api_key("console-admin", &["Auth View", "Auth Modify"])
        .await;
    let browser = signed_in_browser(app, &admin).await;
    browser.goto(&app.url("/console/runs")).await;
    let listed = browser.text("table.runs").await;
    assert!(listed.contains("needs_confirmation"), "{listed}");
    assert!(!browser.find_all("svg.chart rect.removed").await.is_empty());
    let name = format!("{db:?}").to_lowercase();
    browser.screenshot(&format!("{name}-sync-runs")).await;
    browser
        .click(&format!("table.runs a[href='/console/runs/{run}']"))
        .await;
    browser.wait_for_path(&format!("/console/runs/{run}")).await;
    assert_eq!(browser.text("section.group h3").await, "Engineering");
    let removals = browser.find_all("table.diff tr.remove").await;
    assert_eq!(removals.len(), 12);
    let first = removals[0].text().await.unwrap();
    assert!(first.contains("user00@example.com"), "{first}");
    let button = browser.text("form.confirm button").await;
    assert!(button.contains("0 additions and 12 removals"), "{button}");
    browser.screenshot(&format!("{name}-sync-run-diff")).await;

    browser.click("form.confirm button").await;
    let applied = browser.text("p.applied").await;
    assert!(applied.contains("−12"), "{applied}");
    assert_eq!(engineering_members(app.store()).await, 0);
    browser
        .screenshot(&format!("{name}-sync-run-confirmed"))
        .await;

    // The audit page needs Reports View, which this key does not hold.
    browser.goto(&app.url("/console/audit")).await;
    assert!(browser.text("p.error").await.contains("Reports View"));
    browser.close().await;

    // The viewer's audit page: the run's removals, filtered by run and kind, five a page.
    let browser = signed_in_browser(app, &viewer).await;
    browser.goto(&app.url("/console/audit")).await;
    browser.fill("#run", &run).await;
    browser.fill("#action", "membership.remove").await;
    browser.click("form.filters button").await;
    browser.find("table.audit").await;
    let rows = browser.find_all("table.audit tbody tr").await;
    assert_eq!(rows.len(), 12);
    browser.screenshot(&format!("{name}-audit")).await;
    let mut seen = std::collections::BTreeSet::new();
    browser
        .goto(&app.url(&format!(
            "/console/audit?run={run}&action=membership.remove&limit=5"
        )))
        .await;
    for page in 0..3 {
        // Each page's own rows: wait for the page whose first row is not one already seen.
        browser.find("table.audit").await;
        for row in browser.find_all("table.audit tbody tr").await {
            let text = row.text().await.unwrap();
            let user = text
                .split_whitespace()
                .find(|w| w.ends_with("@example.com"))
                .unwrap()
                .to_owned();
            assert!(seen.insert(user), "a row on two pages: {text}");
        }
        if page < 2 {
            let next = browser
                .find("a.older")
                .await
                .attr("href")
                .await
                .unwrap()
                .unwrap();
            browser.goto(&app.url(&next)).await;
        } else {
            assert!(
                browser.find_all("a.older").await.is_empty(),
                "12 rows: 5, 5, 2"
            );
        }
    }
    assert_eq!(seen.len(), 12);
    browser.goto(&app.url("/console/security-events")).await;
    browser.find("main h1").await;
    browser.screenshot(&format!("{name}-security-events")).await;
    browser.close().await;

    // Each removal is audited, after the record of the key that confirmed it.
    let audit = app
        .store()
        .audit(&AuditQuery {
            run_id: Some(run.clone()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let removed = audit
        .iter()
        .filter(|e| e.group.as_deref() == Some("Engineering"))
        .count();
    assert_eq!(removed, 12, "{audit:?}");
    let confirmed = audit
        .iter()
        .find(|e| e.action == "run.confirm")
        .expect("the confirmation is audited");
    assert_eq!(confirmed.actor, "api_key:console-admin");

    // A confirmation of a run that no longer waits is refused and changes nothing.
    let client = console_client(app, &admin).await;
    let page = page_text(&client, &app.url(&format!("/console/runs/{run}"))).await;
    let answer = post_text(
        &client,
        &app.url(&format!("/console/runs/{run}/confirm")),
        &[("csrf", csrf_of(&page).as_str())],
    )
    .await;
    assert!(answer.contains("Not applied"), "{answer}");
}

async fn groups_mappings_and_members_in_a_browser(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let store = app.store();
    saml_sign_in(store, "dana@example.com", &["engineering"]).await;
    saml_sign_in(store, "erik@example.com", &[]).await;
    store
        .set_manual_membership(
            "erik@example.com",
            "Engineering",
            true,
            &Actor::new("user:admin"),
            &permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();

    let key = app
        .api_key("console-groups", &["Groups View", "Auth View"])
        .await;
    let browser = signed_in_browser(app, &key).await;
    browser.goto(&app.url("/console/groups")).await;
    let table = browser.text("table.groups").await;
    let admins = table.find("Domain Admins").expect("Domain Admins listed");
    let engineering = table.find("Engineering").expect("Engineering listed");
    assert!(admins < engineering, "by priority: {table}");
    assert!(table.contains("corp-saml: engineering"), "{table}");
    let name = format!("{db:?}").to_lowercase();
    browser.screenshot(&format!("{name}-groups")).await;
    browser
        .click("table.groups a[href='/console/groups/Engineering']")
        .await;
    browser.wait_for_path("/console/groups/Engineering").await;
    let members = browser.text("table.members").await;
    let dana = members
        .lines()
        .find(|l| l.contains("dana@example.com"))
        .expect("dana is a member");
    assert!(
        dana.contains("mapping #") && dana.contains("from corp-saml"),
        "{dana}"
    );
    let erik = members
        .lines()
        .find(|l| l.contains("erik@example.com"))
        .expect("erik is a member");
    assert!(erik.contains("manual"), "{erik}");
    browser.screenshot(&format!("{name}-group")).await;
    browser.close().await;

    // Without Auth View the mappings are not shown; without Groups View no group is.
    let groups_only = app.api_key("console-groups-only", &["Groups View"]).await;
    let client = console_client(app, &groups_only).await;
    let page = page_text(&client, &app.url("/console/groups")).await;
    assert!(
        page.contains("Engineering") && !page.contains("Mapped from"),
        "{page}"
    );
    let nothing = app.api_key("console-nothing", &["Reports View"]).await;
    let client = console_client(app, &nothing).await;
    let page = page_text(&client, &app.url("/console/groups")).await;
    assert!(
        !page.contains("Engineering") && page.contains("class=\"error\""),
        "{page}"
    );
}

async fn a_mapping_edited_with_its_preview_in_a_browser(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let store = app.store();
    saml_sign_in(store, "gus@example.com", &["engineering"]).await;
    saml_sign_in(store, "hal@example.com", &["staff"]).await;
    let member = |user: &'static str| async move {
        let user = store.user_by_name(user).await.unwrap().unwrap();
        store
            .memberships(user.id)
            .await
            .unwrap()
            .iter()
            .any(|m| m.group.name == "Engineering")
    };
    assert!(member("gus@example.com").await && !member("hal@example.com").await);

    let key = app
        .api_key(
            "console-editor",
            &[
                "Groups View",
                "Groups Modify",
                "Auth View",
                "Auth Modify",
                "Images View",
            ],
        )
        .await;
    let browser = signed_in_browser(app, &key).await;
    browser.goto(&app.url("/console/groups/Engineering")).await;
    browser.click("ul.mappings a.edit").await;
    browser.find("form.edit textarea").await;
    browser.fill("#attributes", "staff").await;
    browser.click("form.edit button[value=preview]").await;

    // The preview: gus would leave, hal would join; nothing is saved yet.
    browser.find("main h2, main p.error").await;
    let source = browser.source().await;
    assert!(source.contains("class=\"save\""), "{source}");
    browser.find("form.save").await;
    let diff = browser.text("table.diff").await;
    let gus = diff
        .lines()
        .find(|l| l.contains("gus@"))
        .expect("gus in the preview");
    let hal = diff
        .lines()
        .find(|l| l.contains("hal@"))
        .expect("hal in the preview");
    assert!(gus.contains("remove") && hal.contains("add"), "{diff}");
    assert!(member("gus@example.com").await && !member("hal@example.com").await);
    let name = format!("{db:?}").to_lowercase();
    browser.screenshot(&format!("{name}-mapping-preview")).await;

    browser.click("form.save button").await;
    assert!(browser.text("p.applied").await.contains("Saved"));
    assert!(!member("gus@example.com").await && member("hal@example.com").await);
    let mapping = store
        .load_config()
        .await
        .unwrap()
        .mappings
        .into_iter()
        .find(|m| m.group.name == "Engineering")
        .unwrap();
    assert_eq!(mapping.attributes, ["staff"]);
    browser.screenshot(&format!("{name}-mapping-saved")).await;
    browser.close().await;

    // Without Auth Modify the edit is refused with the admin layer's words, and nothing changes.
    let viewer = app
        .api_key("console-viewer", &["Groups View", "Auth View"])
        .await;
    let client = console_client(app, &viewer).await;
    let page = page_text(
        &client,
        &app.url(&format!("/console/mappings/{}/edit", mapping.id)),
    )
    .await;
    let answer = post_text(
        &client,
        &app.url(&format!("/console/mappings/{}/edit", mapping.id)),
        &[
            ("csrf", csrf_of(&page).as_str()),
            ("attributes", "nobody"),
            ("intent", "save"),
        ],
    )
    .await;
    assert!(answer.contains("requires the permission"), "{answer}");
    let unchanged = store.load_config().await.unwrap().mappings;
    assert!(unchanged.iter().any(|m| m.attributes == ["staff"]));
}

/// Signs `username` in to the console through the test provider `idp`'s own pages.
async fn console_sign_in_through_the_provider(
    browser: &Browser,
    app: &support::http::TestApp,
    username: &str,
) {
    browser
        .console_sign_in_through_oidc(&app.url("/console/login"), "idp", username, oidc::PASSWORD)
        .await;
}

async fn signed_in_through_an_openid_provider_in_a_browser(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let store = app.store();
    store
        .apply_config(
            &[ConfigChange::GrantPermission {
                group: "Engineering".into(),
                permission: "Reports View".into(),
            }],
            &Actor::new("test"),
            &permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();

    // The sign-in form offers the provider; an unknown one is refused in words.
    let client = http();
    let form = page_text(&client, &app.url("/console/login")).await;
    assert!(form.contains("Sign in with idp (oidc)"), "{form}");
    let answer = client
        .get(app.url("/console/login/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    assert!(answer.text().await.unwrap().contains("no provider named"));

    // alice (engineering at the provider) signs in; her sign-in puts her in Engineering, whose
    // Reports View opens the audit page, where her own sign-in is.
    let browser = Browser::start().await;
    console_sign_in_through_the_provider(&browser, app, "alice").await;
    assert_eq!(browser.text("header.top span.who").await, "user:alice");
    let name = format!("{db:?}").to_lowercase();
    browser
        .screenshot(&format!("{name}-signed-in-through-provider"))
        .await;
    browser.goto(&app.url("/console/audit?user=alice")).await;
    let audit = browser.text("table.audit").await;
    assert!(
        audit.contains("membership.add") && audit.contains("Engineering"),
        "{audit}"
    );

    // Her sessions revoked: the console's ends with them, at the next page.
    store
        .revoke_sessions(
            "alice",
            "test",
            &Actor::new("test"),
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
    browser.goto(&app.url("/console/audit")).await;
    assert!(browser.text("p.error").await.contains("no longer opens it"));

    // Signed in again (the provider remembers her) and out: the idsync session ends too.
    console_sign_in_through_the_provider(&browser, app, "alice").await;
    browser.click("form.signout button").await;
    browser.wait_for_path("/console/login").await;
    let ended = store
        .audit(&AuditQuery {
            username: Some("alice".into()),
            action: Some("session.revoke".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(ended.iter().any(|e| e.actor == "logout:alice"), "{ended:?}");
    browser.goto(&app.url("/console/audit")).await;
    assert_eq!(browser.current_path().await, "/console/login");
    browser.close().await;

    // bob (sales) holds no Reports View: the console opens, the audit does not.
    let browser = Browser::start().await;
    console_sign_in_through_the_provider(&browser, app, "bob").await;
    browser.goto(&app.url("/console/audit")).await;
    assert!(browser.text("p.error").await.contains("Reports View"));
    browser.close().await;
}

/// Starts a console sign-in with the SAML provider: the AuthnRequest's id and RelayState.
async fn console_saml_start(
    app: &support::http::TestApp,
    client: &reqwest::Client,
) -> (String, String) {
    let start = client
        .get(app.url(&format!("/console/login/{SAML_PROVIDER}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 302);
    let redirect = location(&start);
    let relay_state = url::Url::parse(&redirect)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .map(|(_, v)| v.into_owned())
        .expect("RelayState");
    let request = saml::authn_request_xml(&redirect);
    let id = saml::attacks::attr_value(&request, "ID").expect("the request's ID");
    (id, relay_state)
}

async fn signed_in_through_a_saml_provider(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let client = http();
    let (request_id, relay_state) = console_saml_start(app, &client).await;
    let mut spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    spec.in_response_to = Some(request_id);
    spec.groups = vec!["admins".into()];
    let encoded = env.idp.sign_b64(&spec);
    let acs = app.url(&format!("/sso/{SAML_PROVIDER}/acs"));
    let post = |relay_state: String| {
        client
            .post(&acs)
            .form(&[
                ("SAMLResponse", encoded.clone()),
                ("RelayState", relay_state),
            ])
            .send()
    };

    // The IdP's post ends in a console session and a page that goes on to the console (a
    // redirect would carry no SameSite=Strict cookie after another site's post).
    let answer = post(relay_state).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let cookies: Vec<String> = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("idsync_console=") && c.contains("SameSite=Strict")),
        "{cookies:?}"
    );
    let page = answer.text().await.unwrap();
    assert!(page.contains("http-equiv=\"refresh\""), "{page}");
    assert!(page.contains("alice@example.com"), "{page}");
    // Domain Admins (Global Admin) through the response's "admins": the runs open.
    let runs = page_text(&client, &app.url("/console/runs")).await;
    assert!(runs.contains("user:alice@example.com"), "{runs}");
    assert!(!runs.contains("class=\"error\""), "{runs}");

    // The same response again, for another console sign-in: refused, as a console page.
    let signed_out = http();
    let (_, relay_state) = console_saml_start(app, &signed_out).await;
    let answer = signed_out
        .post(&acs)
        .form(&[
            ("SAMLResponse", encoded.as_str()),
            ("RelayState", relay_state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let page = answer.text().await.unwrap();
    assert!(page.contains("Sign-in refused"), "{page}");
    let answer = signed_out
        .get(app.url("/console/runs"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&answer), "/console/login");
}

on_both_databases!(
    signed_in_through_a_saml_provider,
    signed_in_through_an_openid_provider_in_a_browser,
    a_mapping_edited_with_its_preview_in_a_browser,
    groups_mappings_and_members_in_a_browser,
    nothing_opens_without_a_session_and_no_form_crosses_sites,
    the_mapping_tester_in_a_browser,
    a_stopped_run_reviewed_and_confirmed_in_a_browser,
);
