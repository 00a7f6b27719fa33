//! `/v1/nodes`: the fleet's appliances (each a node), how much memory each offers and
//! uses, whether it is alive, and cordoning or draining one; `/v1/fleet/consolidate`:
//! packing servers onto fewer nodes; `/v1/fleet/gc`: collecting what nothing owns.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warden_store::{now_unix_ms, NodeRecord, NodeState};

use super::error::{ApiError, Json, Path};
use super::ApiContext;

/// A node of the fleet.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeInfo {
    /// Its name (`lifecycle.appliance`).
    pub id: String,
    /// `ready`, `cordoned` (takes no new servers), `draining` or `dead`.
    pub state: String,
    pub since_unix_ms: u64,
    /// Its lease runs and it is not dead.
    pub up: bool,
    pub lease_until_unix_ms: u64,
    /// `edge` (accepts players), `node` (runs servers).
    pub roles: Vec<String>,
    /// Where edges reach its servers.
    pub address: String,
    /// Memory it offers game servers, GB.
    pub memory_gb: f64,
    /// Memory of the servers it runs, GB (as of its last lease renewal).
    pub allocated_gb: f64,
    /// Servers it owns, running or not.
    pub servers: u32,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    /// The machine and process holding the registration.
    pub host: String,
    pub pid: u32,
    pub registered_unix_ms: u64,
    /// The UDP port it accepts QUIC links on; absent: edges reach it over TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_port: Option<u16>,
    /// How the appliance answering reaches it: `tcp`, `quic` (its warm link is up),
    /// `quic-down` (the link is down: players go over TCP meanwhile, counted in
    /// `warden_link_fallbacks_total`), `quic-unused` (this appliance has no `[link]`), or
    /// `self`.
    pub link: String,
}

impl From<NodeRecord> for NodeInfo {
    fn from(n: NodeRecord) -> Self {
        NodeInfo {
            up: n.live(now_unix_ms()) && n.state != NodeState::Dead,
            state: n.state.as_str().to_string(),
            since_unix_ms: n.since_unix_ms,
            lease_until_unix_ms: n.lease_until_unix_ms,
            roles: n.roles.iter().map(|r| r.as_str().to_string()).collect(),
            address: n.address,
            memory_gb: n.memory_gb,
            allocated_gb: n.allocated_gb,
            servers: n.servers,
            labels: n.labels,
            version: n.version,
            host: n.host,
            pid: n.pid,
            registered_unix_ms: n.registered_unix_ms,
            link_port: n.link_port,
            link: if n.link_port.is_some() { "quic" } else { "tcp" }.to_string(),
            id: n.id,
        }
    }
}

/// A node as this appliance sees it: with the state of its own link to it.
fn seen(ctx: &ApiContext, n: NodeRecord) -> NodeInfo {
    let me = ctx.engine.appliance() == n.id;
    let up = ctx.edge.link_up(&n.id);
    let mut info = NodeInfo::from(n);
    if info.link_port.is_some() {
        info.link = match (me, up) {
            (true, _) => "self",
            (false, None) => "quic-unused",
            (false, Some(true)) => "quic",
            (false, Some(false)) => "quic-down",
        }
        .to_string();
    }
    info
}

/// What an operator can do to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeAction {
    /// Take no new servers; the ones it owns keep running and waking there.
    Cordon,
    /// Take new servers again.
    Uncordon,
    /// Take no new servers and move every server it owns to other nodes (one migration at
    /// a time, players kept through the anteroom), leaving it empty.
    Drain,
}

/// Every node, sorted by id.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, body = Vec<NodeInfo>), (status = 503, body = super::error::ErrorBody)))]
pub async fn list(State(ctx): State<Arc<ApiContext>>) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    let nodes = ctx.store.nodes().await?;
    Ok(Json(nodes.into_iter().map(|n| seen(&ctx, n)).collect()))
}

#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = NodeInfo), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
) -> Result<Json<NodeInfo>, ApiError> {
    match ctx.store.node(&id).await? {
        Some(n) => Ok(Json(seen(&ctx, n))),
        None => Err(ApiError::not_found(format!("no node `{id}`"))),
    }
}

/// Cordons, drains or uncordons a node; answers with the node as it is now. Doing it twice
/// is harmless; a dead node is refused (409). A drain is carried out by the node itself:
/// follow it with `GET /v1/nodes/{id}` (`servers` falls to 0).
#[utoipa::path(post, path = "/v1/nodes/{id}/{action}", tag = "nodes",
    params(("id" = String, Path, description = "node id"),
           ("action" = NodeAction, Path, description = "cordon, drain or uncordon")),
    responses((status = 200, body = NodeInfo), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)))]
pub async fn act(
    State(ctx): State<Arc<ApiContext>>,
    Path((id, action)): Path<(String, NodeAction)>,
) -> Result<Json<NodeInfo>, ApiError> {
    let Some(node) = ctx.store.node(&id).await? else {
        return Err(ApiError::not_found(format!("no node `{id}`")));
    };
    let to = match action {
        NodeAction::Cordon => NodeState::Cordoned,
        NodeAction::Uncordon => NodeState::Ready,
        NodeAction::Drain => NodeState::Draining,
    };
    let allowed = match (action, node.state) {
        (_, from) if from == to => return Ok(Json(node.into())),
        (_, NodeState::Dead) => false,
        (NodeAction::Cordon, from) => from == NodeState::Ready,
        (NodeAction::Drain, from) => matches!(from, NodeState::Ready | NodeState::Cordoned),
        (NodeAction::Uncordon, from) => matches!(from, NodeState::Cordoned | NodeState::Draining),
    };
    if !allowed {
        return Err(ApiError::conflict(format!(
            "node `{id}` is {}; it cannot be {}ed now",
            node.state,
            match action {
                NodeAction::Cordon => "cordon",
                NodeAction::Uncordon => "uncordon",
                NodeAction::Drain => "drain",
            }
        )));
    }
    if action == NodeAction::Drain {
        let now = warden_store::now_unix_ms();
        let others = ctx.store.nodes().await?;
        if !others.iter().any(|n| n.id != id && n.takes_servers(now)) {
            return Err(ApiError::conflict(format!(
                "node `{id}` cannot be drained: no other ready node can take its servers"
            )));
        }
    }
    let moved = ctx.store.set_node_state(&id, node.state, to).await?;
    tracing::info!(node = %id, from = %node.state, to = %moved.state, "node state changed by an operator");
    Ok(Json(moved.into()))
}

/// A consolidation request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConsolidateRequest {
    /// Only say what would be done.
    pub dry_run: bool,
}

/// One server a consolidation moves.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedMove {
    pub server: String,
    pub from: String,
    pub to: String,
}

/// What a consolidation pass decided.
#[derive(Debug, Serialize, ToSchema)]
pub struct Consolidation {
    /// The node it empties (it is marked draining and moves its servers away); absent when
    /// no node can be freed.
    pub node: Option<String>,
    pub moves: Vec<PlannedMove>,
    /// Why this node, or why none.
    pub why: String,
    /// The drain was started (not a dry run).
    pub started: bool,
}

/// Plans a consolidation pass (the node cheapest to empty whose servers all move without a
/// disconnect and fit elsewhere) and, unless `dry_run`, starts draining that node. One node
/// at a time: while another node drains, nothing is planned.
#[utoipa::path(post, path = "/v1/fleet/consolidate", tag = "nodes",
    request_body = ConsolidateRequest,
    responses((status = 200, body = Consolidation), (status = 503, body = super::error::ErrorBody)))]
pub async fn consolidate(
    State(ctx): State<Arc<ApiContext>>,
    Json(req): Json<ConsolidateRequest>,
) -> Result<Json<Consolidation>, ApiError> {
    let p = ctx.engine.consolidate(req.dry_run).await?;
    Ok(Json(Consolidation {
        node: p.node,
        moves: p
            .moves
            .into_iter()
            .map(|m| PlannedMove {
                server: m.server,
                from: m.from,
                to: m.to,
            })
            .collect(),
        why: p.why,
        started: p.started,
    }))
}

/// A collection request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GcRequest {
    /// Only report; delete nothing.
    pub dry_run: bool,
}

/// One thing no record owns and no rule keeps.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrphanInfo {
    /// `archive`, `backup`, `aside` (a world set aside by a recovery) or `temp`.
    pub kind: String,
    /// The storage key or the path.
    pub what: String,
    pub bytes: u64,
    pub age_secs: Option<u64>,
    pub deleted: bool,
    /// Why it was kept (younger than `[gc] min_age`, a dry run, its age unknown).
    pub kept: Option<String>,
}

/// What a collection found and did.
#[derive(Debug, Serialize, ToSchema)]
pub struct GcInfo {
    pub orphans: Vec<OrphanInfo>,
    pub deleted: usize,
    pub bytes_deleted: u64,
    pub dry_run: bool,
}

/// Finds orphans (archives and backups of servers the store has no record of, worlds set
/// aside by recoveries, leftovers of interrupted restores) and, unless `dry_run`, deletes
/// those older than `[gc] min_age`. Nothing is deleted when the store cannot be read.
#[utoipa::path(post, path = "/v1/fleet/gc", tag = "nodes",
    request_body = GcRequest,
    responses((status = 200, body = GcInfo), (status = 409, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)))]
pub async fn gc(
    State(ctx): State<Arc<ApiContext>>,
    Json(req): Json<GcRequest>,
) -> Result<Json<GcInfo>, ApiError> {
    let r = ctx.engine.gc(req.dry_run).await?;
    Ok(Json(GcInfo {
        orphans: r
            .orphans
            .into_iter()
            .map(|o| OrphanInfo {
                kind: o.kind.to_string(),
                what: o.what,
                bytes: o.bytes,
                age_secs: o.age_secs,
                deleted: o.deleted,
                kept: o.kept,
            })
            .collect(),
        deleted: r.deleted,
        bytes_deleted: r.bytes_deleted,
        dry_run: r.dry_run,
    }))
}
