//! `POST /exec-runs`: the start of one command across a device group (`tether exec --group`).
//! The hub names the group's devices and audits the run; the CLI runs the command on each
//! device through its ordinary session (see [`crate::service::exec_runs`]).

use axum::{Json, extract::State};
use tether_proto::api;

use crate::{
    domain::audit::RequestContext, http::error::ApiError, http::extract::UserCaller, http::state::AppState,
    service::exec_runs,
};

#[utoipa::path(
    post,
    path = api::paths::EXEC_RUNS_PATH,
    tag = "exec",
    request_body = api::NewExecRun,
    responses((status = 200, description = "The run, with the devices it reaches", body = api::ExecRun))
)]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::NewExecRun>,
) -> Result<Json<api::ExecRun>, ApiError> {
    let run = exec_runs::start(&state, &principal, &context, &request.group, &request.command).await?;
    tracing::info!(
        "{} runs a command on {} ({} devices)",
        principal.describe(),
        run.scope.text(),
        run.devices.len()
    );
    let devices = run
        .devices
        .into_iter()
        .map(|run_device| api::ExecRunDevice {
            id: run_device.device.id,
            name: run_device.device.name,
            online: run_device.online,
        })
        .collect();
    Ok(Json(api::ExecRun {
        group: run.scope.text(),
        devices,
    }))
}
