//! The daemon: wires a validated config into running parts — the MQTT
//! source, the Modbus poller (when devices are configured), the shard
//! pipeline, the Parquet archive and its alert-transition export (when
//! enabled), the alert store and lifecycle, the alert stage, the push
//! dispatcher, the tick driver, the MQTT alert publisher and the HTTP
//! server — and stops them in order.
//!
//! `minewatch run`, `minewatch demo`, the end-to-end tests and the benches
//! all start it through [`Daemon::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::alert::{self, Lifecycle};
use crate::archive::alerts::AlertExport;
use crate::archive::{Archive, ArchiveSettings};
use crate::config::{Config, Registry, SharedRegistry};
use crate::ingest::modbus::ModbusSource;
use crate::ingest::mqtt::{MqttSource, options};
use crate::ingest::netfile::{ExceptionBook, NetfileSource};
use crate::ingest::{DeadLetters, Decoder};
use crate::metrics::Metrics;
use crate::pipeline::{Clock, Pipeline};
use crate::web::{self, AppState};

/// Options that are not in the config file.
pub struct DaemonOptions {
    /// Processing time.
    pub clock: Arc<dyn Clock>,
    /// Prefix of every MQTT topic (tests isolate themselves with it).
    pub topic_prefix: String,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            clock: Arc::new(crate::pipeline::SystemClock),
            topic_prefix: String::new(),
        }
    }
}

/// A running daemon.
pub struct Daemon {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The alert lifecycle and its store.
    pub lifecycle: Arc<Lifecycle>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The registry it runs on.
    pub registry: SharedRegistry,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pipeline: Option<Arc<Pipeline>>,
    alert_thread: Option<std::thread::JoinHandle<()>>,
    archive: Option<Archive>,
    alert_export: Option<AlertExport>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// `daemon.shutdown_timeout_secs`.
    stop_within: Duration,
}

impl Daemon {
    /// Starts every part. The config must have passed validation.
    pub async fn start(config: Config, opts: DaemonOptions) -> anyhow::Result<Daemon> {
        // Owner-only: the store holds password hashes and session tokens,
        // dead letters and the archive hold the mines' data.
        crate::private_files::restrict_process();
        crate::private_files::private_dir(&config.daemon.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {} as owner-only (daemon.data_dir)",
                config.daemon.data_dir.display()
            )
        })?;
        let shards = match config.daemon.shards {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let registry = SharedRegistry::new(Registry::build(&config, shards));
        let metrics = Arc::new(Metrics::new(shards));
        let mut dead = DeadLetters::open(&config.daemon.data_dir, config.ingest.dead_letter_keep)
            .with_context(|| {
            format!(
                "cannot open the data directory {} (daemon.data_dir)",
                config.daemon.data_dir.display()
            )
        })?;
        // The archive: accepted readings from the shards, rejected records
        // from the dead-letter store.
        let archive_settings = ArchiveSettings::build(
            &config.archive,
            &config.daemon.data_dir,
            opts.clock.now_ms(),
        );
        let archive = if config.archive.enabled {
            let settings = archive_settings.clone();
            let root = settings.root.clone();
            crate::private_files::private_dir(&root).with_context(|| {
                format!(
                    "cannot create the archive directory {} as owner-only (archive.dir)",
                    root.display()
                )
            })?;
            // The journal's queue holds as many batches as a shard's: the
            // journal thread only encodes and fsyncs (a file write happens
            // on the writer thread, behind `writer_queue_bytes` of rows).
            let archive = Archive::start_with_clock(
                settings,
                registry.clone(),
                metrics.clone(),
                config.daemon.queue_batches,
                opts.clock.clone(),
            )
            .with_context(|| {
                format!(
                    "cannot create the archive directory {} (archive.dir)",
                    root.display()
                )
            })?;
            dead = dead.with_archive(archive.sender());
            Some(archive)
        } else {
            None
        };
        let dead = Arc::new(dead);
        let mut exceptions = ExceptionBook::open(&config.daemon.data_dir, 100_000)
            .context("cannot open ycbj.jsonl in the data directory")?;
        if let Some(a) = &archive {
            // The mines' YCBJ reports also go to the `exceptions` stream.
            exceptions = exceptions.with_archive(a.sender());
        }
        let exceptions = Arc::new(exceptions);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut threads = Vec::new();

        // The store, the lifecycle and the alert stage. The PostgreSQL
        // client must not start on a tokio worker: open it on a blocking
        // thread.
        let store_url = config.alerting.store_url(&config.daemon.data_dir);
        let store = Arc::new(
            tokio::task::spawn_blocking({
                let url = store_url.clone();
                move || crate::store::Store::open(&url)
            })
            .await?
            .with_context(|| {
                format!(
                    "cannot open the alert store {} (alerting.store)",
                    crate::redact::secrets(&store_url)
                )
            })?,
        );
        tracing::info!(store = %store.describe, "alert store open");
        // Mine statuses declared through the API stand over the config's.
        let standing = tokio::task::spawn_blocking({
            let store = store.clone();
            move || store.read(crate::store::alerts::standing_declarations)
        })
        .await?
        .context("cannot read the declared mine statuses from the alert store")?;
        registry.update(|r| {
            let mut changed = false;
            for d in &standing {
                if r.set_mine_status(&d.mine, d.status) {
                    changed = true;
                    tracing::info!(
                        mine = %d.mine,
                        status = d.status.key(),
                        reason = %d.reason,
                        by = %d.by,
                        at = %d.at,
                        "the declared mine status stands over the config's"
                    );
                }
            }
            ((), changed)
        });
        // Committed alert transitions go to the archive's `alerts` stream.
        let alert_export = if config.archive.enabled {
            let (settings, store, metrics) =
                (archive_settings.clone(), store.clone(), metrics.clone());
            Some(
                tokio::task::spawn_blocking(move || AlertExport::start(settings, store, metrics))
                    .await?
                    .context("cannot start the archive's export of alert transitions")?,
            )
        } else {
            None
        };
        let (events, _) = broadcast::channel(4096);
        let wake = Arc::new(Notify::new());
        // Cluster mode: what this instance holds, and the leader gate of
        // the timers and the pushes.
        let cluster = config.cluster.enabled.then(|| {
            crate::cluster::ClusterStatus::new(
                &config.cluster.instance_id,
                config.cluster.partitions,
                &metrics,
            )
        });
        let mut lifecycle = Lifecycle::new(
            store.clone(),
            config.alerting.clone(),
            opts.clock.clone(),
            events.clone(),
            wake.clone(),
            metrics.clone(),
        );
        if let Some(c) = &cluster {
            lifecycle.run_timers_only_when(c.leader.clone());
        }
        let lifecycle = Arc::new(lifecycle);
        {
            let l = lifecycle.clone();
            tokio::task::spawn_blocking(move || l.load_roster())
                .await?
                .context("cannot write the roster to the alert store")?;
            let (store, users) = (store.clone(), config.users.clone());
            let now = opts.clock.now_ms();
            let n = tokio::task::spawn_blocking(move || {
                crate::auth::sessions::sync_config_users(&store, &users, now)
            })
            .await?
            .context("cannot write the users to the store")?;
            if n == 0 {
                tracing::warn!(
                    "no [[users]] configured: nobody can sign in to the page or the API; \
                     see docs/ACCESS.md"
                );
            }
        }
        // The push dispatcher drains the outbox through the channels.
        let dispatcher = crate::alert::dispatch::Dispatcher::from_config(
            &config.alerting.channels,
            &config.mqtt.broker,
            metrics.clone(),
        )
        .context("alert channels (alerting.channels)")?;
        let outbox: Arc<dyn crate::alert::outbox::OutboxStore> = match &cluster {
            Some(c) => Arc::new(crate::cluster::LeaderOutbox {
                store: store.clone(),
                leader: c.leader.clone(),
            }),
            None => store.clone(),
        };
        tasks.push(tokio::spawn(dispatcher.run(
            outbox,
            wake.clone(),
            shutdown_rx.clone(),
        )));
        if config.mqtt.publish_alerts {
            // In a cluster, every instance has its own session.
            let client_id = if config.cluster.enabled {
                format!(
                    "{}-{}-alerts",
                    config.mqtt.client_id, config.cluster.instance_id
                )
            } else {
                format!("{}-alerts", config.mqtt.client_id)
            };
            let o = options(&config.mqtt, &client_id)?;
            tasks.push(tokio::spawn(alert::run_mqtt_publisher(
                o,
                events.subscribe(),
                opts.topic_prefix.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            )));
        }
        let (findings_tx, findings_rx) = crossbeam_channel::bounded(65_536);
        let alert_thread = {
            let (registry, metrics, lifecycle) =
                (registry.clone(), metrics.clone(), lifecycle.clone());
            std::thread::Builder::new()
                .name("alerts".into())
                .spawn(move || alert::run_alert_stage(findings_rx, registry, metrics, lifecycle))?
        };

        // Shards and ticks; the page's trends keep six hours a point.
        let shards_n = registry.snapshot().shards;
        let trends = Arc::new(crate::pipeline::trend::Trends::new(shards_n, 6 * 60));
        let pipeline = Pipeline::start(
            registry.clone(),
            metrics.clone(),
            findings_tx,
            archive.as_ref().map(Archive::sender),
            Some(trends.clone()),
            crate::pipeline::ShardSetup {
                queue_batches: config.daemon.queue_batches,
                started: opts.clock.now_ms(),
                watched: cluster.clone().map(|c| {
                    let w: crate::pipeline::WatchedMines =
                        Arc::new(move |m: &crate::config::MineMeta| c.watches_mine(&m.code));
                    w
                }),
            },
        )?;
        let router = pipeline.router();
        let tick_every = Duration::from_millis(config.daemon.tick_ms);

        // HTTP.
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (http.listen); is another minewatch running?",
                    config.http.listen
                )
            })?;
        let http_addr = listener.local_addr()?;
        write_http_addr(&config.daemon.data_dir, http_addr)?;
        let health = Arc::new(crate::health::Health::new(
            &config.health,
            opts.clock.now_ms(),
        ));
        let app = web::router(AppState {
            lifecycle: lifecycle.clone(),
            trends: trends.clone(),
            events,
            metrics: metrics.clone(),
            dead: dead.clone(),
            registry: registry.clone(),
            exceptions: exceptions.clone(),
            started: Instant::now(),
            auth: web::access::AuthState::new(&config.auth, &config.http, &config.users),
            health: health.clone(),
            clock: opts.clock.clone(),
            cluster: cluster.clone(),
        });
        let mut http_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = http_shutdown.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server stopped");
            }
        }));

        // National files in.
        if let Some(dir) = &config.netfile.dir {
            let source = NetfileSource {
                config: config.netfile.clone(),
                dir: dir.clone(),
                data_dir: config.daemon.data_dir.clone(),
                decoder: Decoder::new(
                    registry.clone(),
                    &config.ingest,
                    config.mqtt.max_payload_bytes,
                ),
                registry: registry.clone(),
                router: router.clone(),
                dead: dead.clone(),
                exceptions,
                metrics: metrics.clone(),
                clock: opts.clock.clone(),
            };
            threads.push(source.spawn(shutdown_rx.clone()).with_context(|| {
                format!(
                    "cannot use the national-file drop directory {} (netfile.dir)",
                    dir.display()
                )
            })?);
        }

        // Modbus in.
        if !config.modbus.devices.is_empty() {
            let modbus = ModbusSource::build(
                &config.modbus,
                &registry.snapshot(),
                metrics.clone(),
                opts.clock.clone(),
            )
            .context("modbus devices (modbus.devices)")?;
            let (router, modbus_shutdown) = (router.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = modbus.run(router, modbus_shutdown).await {
                    tracing::error!(error = %e, "modbus source stopped");
                }
            }));
        }

        // Cluster mode: readings come from NATS JetStream, for the
        // partitions this instance holds.
        if let Some(status) = cluster {
            let parts = crate::cluster::source::DecoderParts {
                decoder: Decoder::new(
                    registry.clone(),
                    &config.ingest,
                    config.mqtt.max_payload_bytes,
                ),
                router,
                dead,
                metrics: metrics.clone(),
                status,
                clock: opts.clock.clone(),
            };
            tasks.push(tokio::spawn(crate::cluster::coordinator::run(
                config.cluster.clone(),
                parts.status.clone(),
                parts,
                shutdown_rx.clone(),
            )));
        } else {
            // MQTT in.
            let source = MqttSource {
                decoder: Decoder::new(
                    registry.clone(),
                    &config.ingest,
                    config.mqtt.max_payload_bytes,
                ),
                config: config.mqtt.clone(),
                topic_prefix: opts.topic_prefix.clone(),
                router,
                dead,
                metrics: metrics.clone(),
                clock: opts.clock.clone(),
            };
            let source_shutdown = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = source.run(source_shutdown).await {
                    tracing::error!(error = %e, "mqtt source stopped");
                }
            }));
        }

        let mut daemon = Daemon {
            http_addr,
            lifecycle,
            metrics,
            registry,
            shutdown,
            tasks,
            pipeline: None,
            alert_thread: Some(alert_thread),
            archive,
            alert_export,
            threads,
            stop_within: Duration::from_secs(config.daemon.shutdown_timeout_secs.max(1)),
        };
        // The tick driver carries processing time to the shards.
        let pipeline = Arc::new(pipeline);
        let ticker = pipeline.clone();
        let clock = opts.clock.clone();
        let mut tick_shutdown = shutdown_rx;
        let (health_metrics, health_registry) = (daemon.metrics.clone(), daemon.registry.clone());
        daemon.tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(tick_every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut trimmed = Instant::now();
            loop {
                tokio::select! {
                    _ = tick_shutdown.changed() => break,
                    _ = every.tick() => {
                        if trimmed.elapsed() >= TRIM_EVERY {
                            trimmed = Instant::now();
                            return_free_memory();
                        }
                        let now = clock.now_ms();
                        ticker.tick(now);
                        // The readiness rules see every change of state,
                        // also between requests.
                        let points = health_registry.snapshot().points.len();
                        health.observe(crate::health::Sample::of(&health_metrics, points), now);
                    }
                }
            }
        }));
        daemon.pipeline = Some(pipeline);
        Ok(daemon)
    }

    /// Stops every part: sources first, then the shards drain, then the
    /// archive commits its journal and writes out the buffered rows (for
    /// at most half of `daemon.shutdown_timeout_secs` from the start of
    /// the stop: what is left is durable in the journal and becomes files
    /// at the next start), then the alert stage, then the last alert
    /// transitions are exported to the archive.
    pub async fn shutdown(mut self) {
        let archive_until = Instant::now() + self.stop_within / 2;
        // First, so that nothing stays blocked behind an archive writer
        // held back by a full disk while the rest stops.
        if let Some(a) = &self.archive {
            a.begin_shutdown();
        }
        let _ = self.shutdown.send(true);
        for mut t in self.tasks.drain(..) {
            // A task that does not stop in time is ended: a detached task
            // would keep what it holds (a source's sender of the shards'
            // queues) alive.
            if tokio::time::timeout(Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                tracing::warn!("a task did not stop within 5 s of the stop signal; ending it");
                t.abort();
            }
        }
        for t in self.threads.drain(..) {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The ticker has stopped, so the pipeline has one owner left.
        if let Some(p) = self.pipeline.take().and_then(|p| Arc::try_unwrap(p).ok()) {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
        if let Some(a) = self.archive.take() {
            let _ = tokio::task::spawn_blocking(move || a.finish_by(Some(archive_until))).await;
        }
        if let Some(t) = self.alert_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        if let Some(e) = self.alert_export.take() {
            let _ = tokio::task::spawn_blocking(move || e.finish()).await;
        }
    }
}

/// How often memory freed by the allocator is given back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Gives memory the allocator holds free back to the system. glibc keeps
/// what a burst freed in its per-thread arenas (measured: 82 MiB above the
/// idle figure long after a burst of large hostile messages had been
/// refused and written); `malloc_trim` returns the free pages. It only
/// walks free lists: a few ms at most, every `TRIM_EVERY`.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only releases memory that
    // is free in the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Name of the file in `daemon.data_dir` that holds the address the HTTP
/// API is bound to (with `http.listen` on port 0, the one the system chose).
pub const HTTP_ADDR_FILE: &str = "http.addr";

/// Writes `http.addr` (the address and a newline), complete or not at all:
/// a script or test that reads it never sees half an address.
fn write_http_addr(data_dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<()> {
    let done = data_dir.join(HTTP_ADDR_FILE);
    let temp = data_dir.join(format!("{HTTP_ADDR_FILE}.tmp"));
    std::fs::write(&temp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&temp, &done))
        .with_context(|| format!("cannot write {}", done.display()))
}
