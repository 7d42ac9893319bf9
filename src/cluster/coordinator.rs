//! The coordinator of one instance: connects to NATS (retrying, with a
//! clear log line, while it is down), makes sure the stream and the lease
//! bucket exist, then every round (a third of the lease TTL) writes its
//! heartbeat, renews or fences its leases, reads who owns what, hands back
//! partitions above its fair share and takes free ones below it, and starts
//! or stops the partition tasks ([`super::source`]) accordingly. On
//! shutdown it stops its partitions and deletes its leases, so that the
//! others take over at once rather than after the TTL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::ClusterConfig;
use super::lease::{
    self, Held, INSTANCE_PREFIX, LEADER_KEY, LeaseValue, instance_key, partition_key,
};
use super::source::{DecoderParts, PartitionRun, spawn_decoder};
use super::status::{ClusterStatus, InstanceView};
use super::{STREAM_SUBJECTS, partition_of};

/// A partition task and its stop switch.
struct Worker {
    held: Held,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Runs the cluster side of one instance until `shutdown` turns true.
pub async fn run(
    cfg: ClusterConfig,
    status: Arc<ClusterStatus>,
    parts: DecoderParts,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = parts.metrics.clone();
    let (to_decoder, from_sources) = mpsc::channel(256);
    let decoder = match spawn_decoder(parts, from_sources) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the NATS decoder thread");
            return;
        }
    };
    let Some((client, js, kv)) = connect(&cfg, &status, &mut shutdown).await else {
        drop(to_decoder);
        let _ = tokio::task::spawn_blocking(move || decoder.join()).await;
        return;
    };
    let ttl = Duration::from_secs(cfg.lease_ttl_secs);
    let round_every = (ttl / 3).clamp(Duration::from_millis(500), Duration::from_secs(2));
    let offset = partition_of(&cfg.instance_id, cfg.partitions);
    let me = cfg.instance_id.clone();
    let mut workers: BTreeMap<u16, Worker> = BTreeMap::new();
    let mut leader: Option<Held> = None;
    let mut every = tokio::time::interval(round_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = every.tick() => {}
        }
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        status.set_connected(connected);
        // Readiness follows the source's connection: here NATS.
        metrics.mqtt_connected.set(i64::from(connected));
        let value = LeaseValue {
            owner: me.clone(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        }
        .encode();
        if let Err(e) = kv.put(instance_key(&me), value.clone()).await {
            tracing::warn!(error = %e, "cannot write this instance's heartbeat to NATS");
        }

        // Renew what we hold; fence what we could not renew in time.
        let mut lost = Vec::new();
        for (p, w) in workers.iter_mut() {
            if w.task.is_finished() {
                lost.push((*p, false));
                continue;
            }
            if renew(&kv, &partition_key(*p), &mut w.held, &value, ttl)
                .await
                .is_err()
            {
                lost.push((*p, true));
            }
        }
        let (mut fenced, mut ended) = (Vec::new(), Vec::new());
        for (p, was_lost) in lost {
            if let Some(w) = workers.remove(&p) {
                if was_lost {
                    tracing::warn!(partition = p, "lease lost; partition fenced and stopped");
                    fenced.push((p, w));
                } else {
                    tracing::warn!(
                        partition = p,
                        "partition task ended; handing the partition back"
                    );
                    ended.push((p, w));
                }
            }
        }
        stop_workers(fenced, &kv, &status, true).await;
        stop_workers(ended, &kv, &status, false).await;
        if let Some(h) = &mut leader
            && renew(&kv, LEADER_KEY, h, &value, ttl).await.is_err()
        {
            tracing::warn!("leader lease lost");
            leader = None;
            status.set_leader(false);
        }
        if leader.is_none() {
            let sent = Instant::now();
            if let Ok(rev) = kv.create(LEADER_KEY, value.clone()).await {
                tracing::info!("leader lease taken: timers and pushes run here");
                leader = Some(Held {
                    revision: rev,
                    renewed: sent,
                });
                status.set_leader(true);
            }
        }

        // Who owns what, who is alive.
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut owners = Vec::with_capacity(usize::from(cfg.partitions));
        let mut free = BTreeSet::new();
        let mut read_ok = true;
        for p in 0..cfg.partitions {
            match kv.entry(partition_key(p)).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => {
                    let v = LeaseValue::decode(&e.value);
                    owners.push((
                        v.as_ref().map(|v| v.owner.clone()),
                        v.map(|v| now_ms - v.at_ms),
                    ));
                }
                Ok(_) => {
                    owners.push((None, None));
                    free.insert(p);
                }
                Err(e) => {
                    read_ok = false;
                    owners.push((None, None));
                    tracing::warn!(partition = p, error = %e, "cannot read a lease");
                }
            }
        }
        let instances = read_instances(&kv, now_ms).await;
        let live = instances.len().max(1);
        status.set_owners(owners, instances);
        if !read_ok {
            continue;
        }
        let held: BTreeSet<u16> = workers.keys().copied().collect();
        let plan = lease::plan(cfg.partitions, &held, &free, live, offset);
        let mut handed = Vec::new();
        for p in plan.release {
            if let Some(w) = workers.remove(&p) {
                tracing::info!(
                    partition = p,
                    instances = live,
                    "handing a partition back to rebalance"
                );
                handed.push((p, w));
            }
        }
        stop_workers(handed, &kv, &status, false).await;
        for p in plan.claim {
            let sent = Instant::now();
            match kv.create(partition_key(p), value.clone()).await {
                Ok(rev) => {
                    tracing::info!(partition = p, "partition lease taken");
                    let (stop, stop_rx) = watch::channel(false);
                    let run = PartitionRun {
                        js: js.clone(),
                        client: client.clone(),
                        stream: cfg.stream.clone(),
                        part: p,
                        warmup_secs: cfg.warmup_secs,
                        status: status.clone(),
                        to_decoder: to_decoder.clone(),
                    };
                    let task = tokio::spawn(async move {
                        let r = run.run(stop_rx).await;
                        if let Err(e) = &r {
                            tracing::error!(partition = p, error = %format!("{e:#}"), "partition task failed");
                        }
                        r
                    });
                    workers.insert(
                        p,
                        Worker {
                            held: Held {
                                revision: rev,
                                renewed: sent,
                            },
                            stop,
                            task,
                        },
                    );
                }
                Err(e) => {
                    tracing::debug!(partition = p, error = %e, "partition taken by another instance")
                }
            }
        }
    }
    // Shutdown: stop every partition, hand every lease back.
    stop_workers(
        std::mem::take(&mut workers).into_iter().collect(),
        &kv,
        &status,
        false,
    )
    .await;
    if let Some(h) = leader {
        let _ = kv
            .delete_expect_revision(LEADER_KEY, Some(h.revision))
            .await;
        status.set_leader(false);
    }
    let _ = kv.delete(instance_key(&me)).await;
    let _ = client.flush().await;
    drop(to_decoder);
    let _ = tokio::task::spawn_blocking(move || decoder.join()).await;
}

/// Renews a lease: an update against our last revision. An error that
/// proves another write (wrong revision) loses it at once; any other error
/// loses it only once it may have expired.
async fn renew(
    kv: &kv::Store,
    key: &str,
    held: &mut Held,
    value: &bytes::Bytes,
    ttl: Duration,
) -> Result<(), ()> {
    let sent = Instant::now();
    if held.fenced(ttl, sent) {
        return Err(());
    }
    match kv.update(key, value.clone(), held.revision).await {
        Ok(rev) => {
            held.revision = rev;
            held.renewed = sent;
            Ok(())
        }
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(()),
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot renew a lease; retrying");
            if held.fenced(ttl, Instant::now()) {
                Err(())
            } else {
                Ok(())
            }
        }
    }
}

/// Stops partition tasks together and waits for them briefly (at most
/// [`STOP_GRACE`] in all). A lost lease is fenced first: the decoder drops
/// whatever of its partition is still queued. A lease handed back stays
/// held while its task stops pulling and acknowledges what completes, so
/// that the next owner starts without redelivery; then it is deleted.
async fn stop_workers(
    workers: Vec<(u16, Worker)>,
    kv: &kv::Store,
    status: &ClusterStatus,
    lost: bool,
) {
    if workers.is_empty() {
        return;
    }
    for (p, w) in &workers {
        if lost {
            status.released(*p, true);
        }
        let _ = w.stop.send(true);
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for (p, w) in workers {
        let mut task = w.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
        if !lost {
            status.released(p, false);
            let _ = kv
                .delete_expect_revision(partition_key(p), Some(w.held.revision))
                .await;
        }
    }
}

/// How long stopping partition tasks may take in all (less than a lease's
/// fencing margin of the others' leases would allow to pass unrenewed).
const STOP_GRACE: Duration = Duration::from_millis(2500);

/// The instances whose heartbeat is in the bucket.
async fn read_instances(kv: &kv::Store, now_ms: i64) -> Vec<InstanceView> {
    let mut out = Vec::new();
    let Ok(mut keys) = kv.keys().await else {
        return out;
    };
    let mut names = Vec::new();
    while let Some(Ok(k)) = keys.next().await {
        if k.starts_with(INSTANCE_PREFIX) {
            names.push(k);
        }
    }
    for k in names {
        if let Ok(Some(e)) = kv.entry(k.clone()).await
            && e.operation == kv::Operation::Put
            && let Some(v) = LeaseValue::decode(&e.value)
        {
            out.push(InstanceView {
                id: v.owner,
                heartbeat_age_ms: now_ms - v.at_ms,
            });
        }
    }
    out
}

/// Connects and prepares the stream and the bucket, retrying with a
/// growing pause until it works or `shutdown` turns true.
async fn connect(
    cfg: &ClusterConfig,
    status: &ClusterStatus,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(async_nats::Client, jetstream::Context, kv::Store)> {
    let shown = crate::redact::secrets(&cfg.nats_url);
    let mut backoff = Duration::from_millis(500);
    loop {
        match try_connect(cfg).await {
            Ok(c) => {
                tracing::info!(nats = %shown, stream = %cfg.stream, bucket = %cfg.bucket, "connected to NATS JetStream");
                status.set_connected(true);
                return Some(c);
            }
            Err(e) => {
                status.set_connected(false);
                tracing::error!(
                    nats = %shown,
                    error = %format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot use NATS JetStream (cluster.nats_url); is nats-server running with JetStream (-js)? retrying"
                );
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn try_connect(
    cfg: &ClusterConfig,
) -> anyhow::Result<(async_nats::Client, jetstream::Context, kv::Store)> {
    use anyhow::Context;
    let client = async_nats::ConnectOptions::new()
        .name(format!("minewatch-{}", cfg.instance_id))
        .connection_timeout(Duration::from_secs(3))
        .connect(cfg.nats_url.as_str())
        .await
        .context("cannot connect")?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![STREAM_SUBJECTS.to_string()],
        max_age: Duration::from_secs(cfg.retention_secs),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create or open the stream {}", cfg.stream))?;
    // The bucket's stream is made here, as the client's `create_key_value`
    // would make it: that call first reads the account's info, whose
    // answer from nats-server 2.9 async-nats 0.50 cannot parse.
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{}", cfg.bucket),
        description: Some("minewatch partition leases".into()),
        subjects: vec![format!("$KV.{}.>", cfg.bucket)],
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(cfg.lease_ttl_secs),
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create the lease bucket {}", cfg.bucket))?;
    let kv = js
        .get_key_value(cfg.bucket.as_str())
        .await
        .with_context(|| format!("cannot open the lease bucket {}", cfg.bucket))?;
    Ok((client, js, kv))
}
