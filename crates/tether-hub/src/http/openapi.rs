//! The management API's routes and its OpenAPI 3.1 description, from one declaration: each
//! handler carries its `#[utoipa::path]` (method, path, parameters, bodies) beside its code, and
//! [`management_routes`] registers every handler through `utoipa_axum::routes!`, which takes the
//! route from that same declaration. A route cannot be served undocumented or documented
//! unserved. The document is served at [`DESCRIPTION_PATH`]; `docs/api.md` points at it.

use axum::{
    body::Bytes,
    extract::DefaultBodyLimit,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use tether_proto::api;
use utoipa::{
    OpenApi,
    openapi::{
        self, ContentBuilder, ResponseBuilder,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{
    access, active_sessions, audit, detached, devices, exec_runs, file_download, file_listing, files,
    install_tokens, login, roles, sessions, state::AppState, terminal, two_factor, users, web_session,
};

/// Where the description is served (without authentication: it holds no data).
pub const DESCRIPTION_PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tether hub management API",
        description = "Devices, terminals, files, audit, recordings, users, roles and access \
            approval. Authenticate with `Authorization: Bearer TOKEN` (from `POST /auth/login` or \
            `POST /tokens`); browsers use the session cookie, and then send the CSRF token in \
            `X-CSRF-Token` on every request that changes state. Every error is \
            `{\"error\": \"...\"}` with a status that says what kind. Responses carry \
            `X-Request-Id`, which the hub's log lines and audit refusals also carry."
    ),
    security(("bearer" = []), ("cookie" = [])),
    components(schemas(api::ApiError)),
    tags(
        (name = "auth", description = "Logins, browser sessions, passwords and two-factor login"),
        (name = "devices", description = "The fleet: admission, tags, removal"),
        (name = "terminals", description = "Terminals and everything else on the device WebSocket"),
        (name = "files", description = "Files to and from devices"),
        (name = "exec", description = "A command on many devices"),
        (name = "sessions", description = "Live sessions of every kind, terminal recordings and live watching"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "users", description = "Users and hub-wide settings"),
        (name = "tokens", description = "Access tokens for scripts"),
        (name = "roles", description = "Roles and their grants"),
        (name = "access", description = "Access approval: requests and policies"),
        (name = "install-tokens", description = "Tokens that admit devices installed with the one-line install"),
    )
)]
struct ApiDescription;

/// The management API's routes (their state still to be given), and beside them the route of
/// their description.
pub fn management_routes() -> axum::Router<AppState> {
    let (router, mut description) = OpenApiRouter::with_openapi(ApiDescription::openapi())
        .routes(routes!(login::login))
        .routes(routes!(login::logout))
        .routes(routes!(users::change_password))
        .routes(routes!(web_session::login))
        .routes(routes!(web_session::logout))
        .routes(routes!(web_session::session))
        .routes(routes!(two_factor::enrol))
        .routes(routes!(two_factor::confirm))
        .routes(routes!(two_factor::disable))
        .routes(routes!(two_factor::setting, two_factor::set_setting))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::show_device, devices::remove_device))
        .routes(routes!(devices::accept_device))
        .routes(routes!(devices::reject_device))
        .routes(routes!(roles::set_device_tags))
        .routes(routes!(terminal::connect))
        .routes(routes!(file_download::download))
        .routes(routes!(file_listing::list))
        // Uploads are streamed to the device, whose maximum file size limits them: no body limit.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(files::upload))
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(exec_runs::create))
        .routes(routes!(sessions::list))
        .routes(routes!(detached::list))
        .routes(routes!(active_sessions::list))
        .routes(routes!(sessions::segments))
        .routes(routes!(sessions::recording))
        .routes(routes!(sessions::asciicast))
        .routes(routes!(sessions::watch))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(audit::anchor))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::disable_user))
        .routes(routes!(users::enable_user))
        .routes(routes!(users::revoke_sessions))
        .routes(routes!(users::list_tokens, users::create_token))
        .routes(routes!(users::revoke_token))
        .routes(routes!(roles::list_roles, roles::create_role))
        .routes(routes!(roles::delete_role))
        .routes(routes!(roles::user_roles, roles::set_user_roles))
        .routes(routes!(roles::list_policies, roles::set_policy))
        .routes(routes!(access::list, access::create))
        .routes(routes!(access::show))
        .routes(routes!(access::approve))
        .routes(routes!(access::deny))
        .routes(routes!(access::revoke))
        .routes(routes!(install_tokens::list, install_tokens::create))
        .routes(routes!(install_tokens::revoke))
        .split_for_parts();
    complete(&mut description);
    let json = Bytes::from(description.to_pretty_json().unwrap_or_default());
    router.route(
        DESCRIPTION_PATH,
        get(move || {
            let json = json.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    json,
                )
                    .into_response()
            }
        }),
    )
}

/// What every operation shares, added once here rather than on each handler: the version, the
/// two ways to authenticate, and the error answers (every 4xx and 5xx is an `ApiError`, which
/// `http::error` guarantees for the errors axum itself answers too).
fn complete(description: &mut openapi::OpenApi) {
    description.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = description.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A login session token or an access token"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::http::cookies::COOKIE,
            "The web UI's session cookie (state-changing requests also need X-CSRF-Token)",
        ))),
    );
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(openapi::Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build()
    };
    for item in description.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.head,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses
                .entry("4XX".to_owned())
                .or_insert_with(|| error("Refused: the message says why").into());
            responses
                .entry("5XX".to_owned())
                .or_insert_with(|| error("The hub or the device failed (see the hub's log)").into());
        }
    }
}
