//! etcd-client's balancer, with a TLS connector that takes the current
//! credentials for every new connection.
//!
//! etcd-client builds tonic endpoints whose TLS configuration is fixed when
//! the client is made; tonic's reconnects reuse it. Its
//! `connect_with_balanced_channel` lets us supply the channel instead: we
//! receive the endpoint changes it sends (at connect, and from steering's
//! `add_endpoint`/`remove_endpoint`), balance over them as tonic does (p2c
//! with a constant load), and connect each endpoint through [`Connector`],
//! which does the TLS handshake itself with [`Credentials`] as they are at
//! that moment.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client::{BalancedChannelBuilder, Channel, ConnectOptions};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;
use tower::BoxError;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change as Discovered;
use tower::load::Constant;
use tower::util::{BoxCloneSyncService, BoxService};

use super::{ALPN_H2, Credentials};

/// Requests that may wait for a ready connection, as in tonic's channel.
const BUFFER: usize = 1024;

/// How each endpoint's connection behaves (what etcd-client would have set
/// on the endpoints it builds, which we replace).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Limit on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval and timeout (pinged while idle too).
    pub keep_alive: Option<(Duration, Duration)>,
}

/// Connects an etcd client to `endpoints` (`https://host:port`) whose TLS
/// credentials are read again for every new connection. `opts` must not
/// carry TLS options (the connector does TLS).
pub(crate) async fn connect(
    endpoints: &[String],
    opts: ConnectOptions,
    credentials: Arc<Credentials>,
    settings: Settings,
) -> Result<etcd_client::Client, etcd_client::Error> {
    let builder = Rotating {
        credentials,
        settings,
    };
    etcd_client::Client::connect_with_balanced_channel(endpoints, Some(opts), builder).await
}

struct Rotating {
    credentials: Arc<Credentials>,
    settings: Settings,
}

impl BalancedChannelBuilder for Rotating {
    type Error = tonic::transport::Error;

    fn balanced_channel(
        self,
        buffer_size: usize,
    ) -> Result<(Channel, mpsc::Sender<Change<Uri, Endpoint>>), Self::Error> {
        let (tx, rx) = mpsc::channel(buffer_size);
        let discover = Endpoints {
            changes: rx,
            credentials: self.credentials,
            settings: self.settings,
        };
        let balance = BoxService::new(Balance::new(discover));
        let buffered = Buffer::new(balance, BUFFER);
        Ok((Channel::Custom(BoxCloneSyncService::new(buffered)), tx))
    }
}

type Connection = Constant<tonic::transport::Channel, usize>;

/// The balancer's view of etcd-client's endpoint changes: each inserted
/// endpoint becomes a lazily connected channel through [`Connector`].
struct Endpoints {
    changes: mpsc::Receiver<Change<Uri, Endpoint>>,
    credentials: Arc<Credentials>,
    settings: Settings,
}

impl Endpoints {
    /// A plain `http://` endpoint (our connector does the TLS, tonic must
    /// not), whose requests still say `https` (the origin).
    fn connection(&self, uri: &Uri) -> Option<Connection> {
        let authority = uri.authority()?.clone();
        let with = |scheme: &str| {
            Uri::builder()
                .scheme(scheme)
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .ok()
        };
        let mut endpoint = tonic::transport::Channel::builder(with("http")?)
            .origin(with("https")?)
            .connect_timeout(self.settings.connect_timeout);
        if let Some((interval, timeout)) = self.settings.keep_alive {
            endpoint = endpoint
                .keep_alive_while_idle(true)
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout);
        }
        let connector = Connector::new(self.credentials.clone(), authority.host());
        Some(Constant::new(
            endpoint.connect_with_connector_lazy(connector),
            0,
        ))
    }
}

impl futures_core::Stream for Endpoints {
    type Item = Result<Discovered<Uri, Connection>, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.changes.poll_recv(cx) {
                // Closed: etcd-client's client is gone; keep what we have
                // rather than fail the balancer (as tonic does).
                Poll::Pending | Poll::Ready(None) => return Poll::Pending,
                Poll::Ready(Some(Change::Insert(key, endpoint))) => {
                    match self.connection(endpoint.uri()) {
                        Some(c) => return Poll::Ready(Some(Ok(Discovered::Insert(key, c)))),
                        None => log::warn!(
                            "os-lively: etcd endpoint {} has no host:port; ignored",
                            endpoint.uri()
                        ),
                    }
                }
                Poll::Ready(Some(Change::Remove(key))) => {
                    return Poll::Ready(Some(Ok(Discovered::Remove(key))));
                }
            }
        }
    }
}

/// TCP, then TLS with the credentials current at that moment.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    credentials: Arc<Credentials>,
    /// Checked in the server's certificate: the configured server name, or
    /// the endpoint's host.
    server_name: String,
}

impl Connector {
    fn new(credentials: Arc<Credentials>, host: &str) -> Connector {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        let server_name = credentials
            .server_name()
            .unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']'))
            .to_string();
        Connector {
            tcp,
            credentials,
            server_name,
        }
    }
}

type Io = TokioIo<TlsStream<TcpStream>>;

impl tower::Service<Uri> for Connector {
    type Response = Io;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Io, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.tcp.call(uri);
        let credentials = self.credentials.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let name = ServerName::try_from(name.as_str())
                .map_err(|e| format!("TLS server name {name:?}: {e}"))?
                .to_owned();
            let config = credentials.for_new_connection().await;
            let tcp = tcp.await?.into_inner();
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err("etcd did not agree to HTTP/2 (ALPN h2) over TLS".into());
            }
            Ok(TokioIo::new(tls))
        })
    }
}
