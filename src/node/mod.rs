//! A Tollgate node: the store, the catalogue, the entity actors, the
//! flusher, the ledger and the HTTP API, started and stopped together.

mod cluster;
pub mod connections;
mod reconcile;

pub use cluster::ClusterNode;

use crate::actor::{ActorDeps, EntitySupervisor, Takeover};
use crate::alerts::dispatcher::DispatchSettings;
use crate::alerts::{Dispatcher, DispatcherHandle, Senders};
use crate::catalog::Catalog;
use crate::config::{HttpConfig, ServeConfig};
use crate::http::{self, AppState};
use crate::identity::admin_token::{self, AdminTokenSource};
use crate::identity::api_keys::ApiKeys;
use crate::identity::jwt::JwtVerifier;
use crate::identity::{Authenticator, Directory};
use crate::ledger::{self, Ledger};
use crate::router::deltas::{CounterDeltas, MIN_MAX_PENDING_ENTITIES};
use crate::router::flusher::Flusher;
use crate::router::peer_handler::PeerHandler;
use crate::router::{EntityRouter, LocalEntities, PassivationPolicy, spawn_sweeper};
use crate::service::new_entities::NewEntityGate;
use crate::store::{Store, StoreError};
use ractor::Actor;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The alert lease owner of a node outside a cluster (there is one).
const SINGLE_NODE_ID: &str = "single";

/// How often API keys' `last_used_at` is written (one batch per round).
const KEY_USE_WRITE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not start the entity supervisor: {0}")]
    Supervisor(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A started node (not yet serving HTTP).
pub struct Node {
    state: Arc<AppState>,
    flusher: Arc<Flusher>,
    local: Arc<LocalEntities>,
    tasks: Vec<JoinHandle<()>>,
    /// Stopped at shutdown after the ledger's last commit.
    dispatcher: Option<DispatcherHandle>,
    generated_admin_token_file: Option<PathBuf>,
    http: HttpConfig,
    /// The `--ops-listen` listener, bound at start so a taken port fails
    /// the start, not the serve.
    ops_listener: Option<TcpListener>,
}

impl Node {
    /// Opens the store (migrating it), loads the catalogue and starts the
    /// background tasks.
    pub async fn start(config: &ServeConfig) -> Result<Node, NodeError> {
        config.http.validate().map_err(NodeError::Config)?;
        // Before anything registers a metric handle: a handle taken before
        // the recorder exists would count into nothing.
        crate::telemetry::install();
        let store = Store::open_with(&config.database.database_url, config.database.store_options()).await?;
        let catalog = Arc::new(Catalog::new(store.load_tiers().await?, store.load_prices().await?));
        let (admin, source) = admin_token::resolve(&store, config.admin_token.as_deref(), &config.admin_token_file())
            .await
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let generated_admin_token_file = match source {
            AdminTokenSource::Generated(path) => Some(path),
            _ => None,
        };

        let directory = Arc::new(Directory::new(store.load_memberships().await?));
        let keys = ApiKeys::load(store.clone()).await?;
        let jwt = JwtVerifier::new(&config.jwt).map_err(|e| NodeError::Config(e.to_string()))?;
        if let Some(verifier) = jwt.clone() {
            // Best effort: a failure only logs, and the first token retries.
            tokio::spawn(async move { verifier.warm_up().await });
        }

        config
            .cluster
            .validate(config.listen, &config.database.database_url)
            .map_err(NodeError::Config)?;
        let cluster = if config.cluster.enabled() {
            ClusterNode::start(&config.cluster, config.listen)
                .await
                .map_err(|e| NodeError::Config(e.to_string()))?
        } else {
            ClusterNode::single(config.listen)
        };

        let max_entities = usize::try_from(config.max_entities).unwrap_or(usize::MAX);
        // Room for every resident entity's deltas many times over: the cap
        // bounds memory, it is never meant to be met (see router/deltas.rs).
        let deltas = Arc::new(CounterDeltas::with_cap(
            max_entities.saturating_mul(4).max(MIN_MAX_PENDING_ENTITIES),
        ));
        let flusher = Arc::new(Flusher::new(deltas.clone(), store.clone()));
        let (supervisor, _) = Actor::spawn(None, EntitySupervisor, ())
            .await
            .map_err(|e| NodeError::Supervisor(e.to_string()))?;
        let deps = ActorDeps {
            store: store.clone(),
            catalog: catalog.clone(),
            deltas,
            flusher: flusher.clone(),
            takeover: cluster.routing.clone().map(|r| r as Arc<dyn Takeover>),
        };
        let local = Arc::new(LocalEntities::new(supervisor.get_cell(), deps, max_entities));
        if let Some(routing) = &cluster.routing {
            let routing = routing.clone();
            local.set_ownership(Arc::new(move |key| routing.target(key) == crate::router::Target::Local));
        }
        let router = match &cluster.routing {
            Some(routing) => EntityRouter::clustered(local.clone(), routing.clone()),
            None => EntityRouter::new(local.clone()),
        };
        if let Some(routing) = &cluster.routing {
            // Counter writes refused by the fence mean another node owns
            // those entities now: stop serving them here.
            let fenced_local = local.clone();
            flusher.on_fenced(Arc::new(move |keys| fenced_local.drop_stale(&keys)));
            cluster
                .serve_rpc(PeerHandler {
                    router: router.clone(),
                    local: local.clone(),
                    flusher: flusher.clone(),
                    cluster: routing.clone(),
                    directory: directory.clone(),
                    keys: keys.clone(),
                    catalog: catalog.clone(),
                    store: store.clone(),
                })
                .await
                .map_err(|e| NodeError::Config(e.to_string()))?;
        }
        let policy = PassivationPolicy {
            idle_timeout: config.idle_timeout(),
            max_entities,
            sweep_every: (config.idle_timeout() / 10).clamp(Duration::from_millis(200), Duration::from_secs(10)),
        };
        let mut tasks = vec![
            store.spawn_probe(),
            flusher.clone().spawn(config.flush_interval()),
            spawn_sweeper(local.clone(), policy),
            keys.clone().spawn_last_used_writer(KEY_USE_WRITE_INTERVAL),
        ];
        tasks.extend(cluster.spawn_entity_count(local.clone()));
        if cluster.routing.is_some() {
            let caches = reconcile::Caches {
                store: store.clone(),
                directory: directory.clone(),
                keys: keys.clone(),
                catalog: catalog.clone(),
            };
            tasks.push(caches.spawn(reconcile::RECONCILE_EVERY));
        }
        let ledger_policy = match store {
            Store::Postgres(_) => ledger::POSTGRES_POLICY,
            Store::Sqlite(_) => ledger::SQLITE_POLICY,
        };
        let ledger = Ledger::spawn(store.clone(), ledger_policy);
        // Alert delivery: woken by the ledger after each commit that
        // created deliveries; leases carry the node id.
        let senders = Senders::new(&config.alerts).map_err(|e| NodeError::Config(e.to_string()))?;
        let dispatcher = Dispatcher::new(
            Arc::new(store.clone()),
            senders,
            config.cluster.node_id.as_deref().unwrap_or(SINGLE_NODE_ID),
            DispatchSettings::from_config(&config.alerts),
            ledger.alerts_written(),
        )
        .spawn();
        let state = Arc::new(AppState {
            router,
            cluster: Arc::new(cluster),
            catalog,
            ledger,
            store,
            auth: Authenticator {
                admin,
                keys: keys.ring().clone(),
                jwt,
                trusted_proxies: config.trusted_proxies.clone(),
                guest_ipv6_prefix: config.guest_ipv6_prefix,
            },
            directory,
            keys,
            alert_resolver: config.alerts.resolver(),
            hold_ttl_ms: i64::try_from(config.hold_ttl_s * 1000).unwrap_or(i64::MAX),
            new_entities: NewEntityGate::new(config.max_new_entities_per_ip),
            metrics: Some(crate::telemetry::install().clone()),
            metrics_counters: http::HotCounters::register(),
            telemetry: config.telemetry.clone(),
            scrape_gauges: Default::default(),
            unready_when_store_down: config.unready_when_store_down,
        });
        let ops_listener = match config.ops_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Node {
            state,
            flusher,
            local,
            tasks,
            dispatcher: Some(dispatcher),
            generated_admin_token_file,
            http: config.http.clone(),
            ops_listener,
        })
    }

    /// The file holding the admin token, if this start generated it.
    pub fn generated_admin_token_file(&self) -> Option<&Path> {
        self.generated_admin_token_file.as_deref()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn entities(&self) -> &Arc<LocalEntities> {
        &self.local
    }

    /// The axum app.
    pub fn app(&self) -> axum::Router {
        http::routes(self.state.clone())
    }

    /// Where `--ops-listen` is bound, if it is.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves HTTP on `listener` (and on `--ops-listen`) until `shutdown`
    /// completes, then shuts down gracefully: stop accepting, finish
    /// in-flight requests within `--shutdown-grace-s`, wait for ledger
    /// commits, flush every counter delta.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let mut endpoints = vec![connections::Endpoint {
            listener,
            app: self.app(),
        }];
        if let Some(ops) = self.ops_listener.take() {
            endpoints.push(connections::Endpoint {
                listener: ops,
                app: http::ops_routes(self.state.clone()),
            });
        }
        // In a cluster, a shutdown is a graceful leave: entities are handed
        // over while HTTP still answers (forwarding to the new owners).
        let cluster = self.state.cluster.clone();
        let local = self.local.clone();
        let leave_then_stop = async move {
            shutdown.await;
            cluster.leave(&local).await;
        };
        self.state.cluster.ready().await;
        connections::serve(&self.http, endpoints, leave_then_stop).await;
        self.shutdown().await
    }

    /// Final flush and stop (after the HTTP server has stopped).
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        self.state.ledger.drain().await;
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.stop().await;
        }
        if let Err(e) = self.state.keys.write_last_used().await {
            tracing::warn!(error = %e, "could not write API keys' last use at shutdown");
        }
        for task in &self.tasks {
            task.abort();
        }
        // Retry a few times: a shutdown must not drop counts because the
        // database blinked.
        let mut result = self.flusher.flush().await;
        for _ in 0..5 {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            result = self.flusher.flush().await;
        }
        self.local.stop_all();
        self.state.cluster.shutdown().await;
        result.map(|_| ()).map_err(NodeError::from)
    }
}
