//! `serve`: opens the store, binds the listener (TLS, or plain HTTP on loopback or with
//! `allow_insecure_http`), serves `http::app` until SIGTERM or Ctrl-C.
//!
//! Must never: listen in plain HTTP on a non-loopback address without the explicit flag.

use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config};
use crate::http::{app, AppState};
use crate::metrics::{Histogram, Metrics};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// Opens the configured store.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    match config.database.backend {
        Backend::Sqlite => {
            let path = config.sqlite_path();
            let store = SqliteStore::open(
                &path,
                config.ingest.queue_depth,
                config.ingest.max_jobs_per_commit,
                Arc::new(Histogram::default()),
            )?;
            Ok(Arc::new(store))
        }
        Backend::Postgres => {
            let url = config.database.url.as_deref().ok_or_else(|| {
                ServeError::Config("database.url is required for postgres".into())
            })?;
            let store = PgStore::connect(
                url,
                config.database.tls_ca_file.as_deref(),
                config.database.pool_size,
                Arc::new(Histogram::default()),
            )
            .await?;
            Ok(Arc::new(store))
        }
    }
}

/// Serves until a termination signal. `on_listen` receives the bound address (port 0
/// picks a free one).
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let store = open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = Arc::new(config);
    let state = AppState {
        store: store.clone(),
        clock: clock.clone(),
        config: config.clone(),
        metrics: Arc::new(Metrics::default()),
        alerts: Arc::new(crate::alerts::Alerter::start(
            config.alerts.webhook.clone(),
            store.clone(),
            clock.clone(),
        )),
        auth_cache: Default::default(),
        logins: Default::default(),
    };
    tokio::spawn(retention_loop(state.clone()));
    if state.alerts.enabled() {
        tokio::spawn(silence_loop(state.clone()));
    }
    let router = app(state);
    if !config.listen.ip().is_loopback() && config.tls.is_none() && !config.allow_insecure_http {
        return Err(ServeError::Config(format!(
            "{} is not loopback: configure [tls] or allow_insecure_http",
            config.listen
        )));
    }
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    match &config.tls {
        Some(tls) => {
            // ring, as decided for the project (no C toolchain beyond ring's for aws-lc).
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls_config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                    .await
                    .map_err(|e| ServeError::Tls(e.to_string()))?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            crate::log(&format!("listening on https://{local}"));
            notify_ready();
            axum_server::from_tcp_rustls(listener, rustls_config)
                .handle(handle)
                .serve(router.into_make_service())
                .await?;
        }
        None => {
            // TCP_NODELAY: an answer goes out at once, not after the peer's delayed ACK.
            let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            crate::log(&format!("listening on http://{local}"));
            notify_ready();
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    crate::log("stopped");
    Ok(())
}

/// A retention pass every `retention.interval_secs` (the first one a minute after start).
async fn retention_loop(state: AppState) {
    let every = std::time::Duration::from_secs(state.config.retention.interval_secs.max(1));
    tokio::time::sleep(every.min(std::time::Duration::from_secs(60))).await;
    loop {
        let (events, archive) = state.config.retention.cutoffs(state.clock.now_unix_ms());
        match state.store.retain(events, archive).await {
            Ok(r) if r.events_deleted > 0 || r.hosts_archived > 0 || r.alerts_deleted > 0 => {
                crate::log(&format!(
                    "retention: {} event(s) deleted, {} sent alert(s) deleted, {} host(s) archived",
                    r.events_deleted, r.alerts_deleted, r.hosts_archived
                ))
            }
            Ok(_) => {}
            Err(e) => crate::log(&format!("retention: {e}")),
        }
        tokio::time::sleep(every).await;
    }
}

/// Every 15 s: alerts for hosts that went silent or came back. After a restart every host
/// silent at that moment is looked at again: its alert has the same id as before and is in
/// the outbox once (unless retention deleted it as sent long ago).
async fn silence_loop(state: AppState) {
    let mut silent = std::collections::HashSet::new();
    loop {
        if let Err(e) = silence_pass(&state, &mut silent).await {
            crate::log(&format!("silent hosts: {e}"));
        }
        tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    }
}

/// One look at the hosts' liveness; alerts for the changes since `silent`.
pub async fn silence_pass(
    state: &AppState,
    silent: &mut std::collections::HashSet<String>,
) -> Result<(), StoreError> {
    let rows = crate::http::host_rows(
        state.store.as_ref(),
        state.clock.now_unix_ms(),
        &state.config,
    )
    .await?;
    let mut before = silent.clone();
    let (went, back) = crate::alerts::silence_changes(silent, &rows);
    let mut alerts = Vec::new();
    for h in went {
        alerts.extend(state.alerts.for_liveness(h, true));
    }
    for h in back {
        alerts.extend(state.alerts.for_liveness(h, false));
    }
    if alerts.is_empty() {
        return Ok(());
    }
    match state
        .store
        .enqueue_alerts(alerts, state.clock.now_unix_ms())
        .await
    {
        Ok(new) => {
            if new > 0 {
                state.alerts.wake();
            }
            Ok(())
        }
        Err(e) => {
            // Not written: the next pass sees the same changes again.
            std::mem::swap(silent, &mut before);
            Err(e)
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Tells systemd (`Type=notify`) the collector is ready, when it runs under it.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = sent {
        crate::log(&format!("sd_notify: {e}"));
    }
}
