//! `amqp://[USER:PASS@]HOST[:PORT][/VHOST][?exchange=NAME&queue=NAME&heartbeat=SECS]`:
//! vassals announced on a RabbitMQ (AMQP 0-9-1) fanout exchange, with the
//! upstream message formats.
//!
//! * Empty routing key: the body is an absolute config path (a regular file
//!   → upsert the vassal named by its file name; anything else → remove it)
//!   or an `http://` URL (fetched; 200 → upsert with the body inline, any
//!   other status → remove; the name is the URL's last path segment).
//! * Non-empty routing key: it is the vassal name and the body its config;
//!   an empty body removes the vassal. Every message is a new version.
//!
//! Each emperor consumes from its own durable queue bound to the exchange,
//! so every emperor sees every message and messages sent while it is down
//! wait for it. A message is acknowledged only once its event has been
//! handed to the emperor. Connection loss stops nothing: the source
//! reconnects with exponential backoff.

use super::{self as message, MessageError, Versioner, MAX_CONFIG};
use crate::source::util::retry::Outage;
use crate::source::util::secret;
use crate::source::{Built, Source, SourceContext, SourceError, SourceEvent, SourceTask};
use futures::StreamExt;
use http::HttpError;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use reconciler::{SourceId, VassalName};
use request::Request;
use std::time::Duration;
use uri::{default_queue, parse, Settings};

pub(crate) mod http;
pub(crate) mod request;
mod uri;

/// How long connecting and fetching `http://` configs may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Unacknowledged messages the broker may push ahead.
const PREFETCH: u16 = 16;

/// A RabbitMQ fanout exchange of vassal announcements.
#[derive(Debug)]
pub struct AmqpSource {
    settings: Settings,
    id: SourceId,
}

impl AmqpSource {
    /// Builds the source from the part after `amqp://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        let id = secret::strip(&format!("amqp://{rest}"));
        let settings = parse(rest).map_err(|message| SourceError::Invalid { uri: id.clone(), message })?;
        Ok(Box::new(Self { settings, id: SourceId(id) }))
    }
}

impl Source for AmqpSource {
    fn id(&self) -> SourceId {
        self.id.clone()
    }

    fn lists(&self) -> bool {
        false
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let queue = self.settings.queue.clone().unwrap_or_else(|| default_queue(&ctx.emperor_id));
        tracing::info!(source = %ctx.id, exchange = %self.settings.exchange, %queue, "amqp source starting");
        let consumer = Consumer { settings: self.settings.clone(), queue, ctx, versions: Versioner::new() };
        Box::pin(async move {
            Ok(Box::pin(async move {
                consumer.run().await;
                Ok(())
            }) as SourceTask)
        })
    }
}

/// How a session with the broker ended.
enum End {
    /// The emperor is shutting down.
    Shutdown,
    /// The connection failed or was lost.
    Lost(String),
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
}

struct Consumer {
    settings: Settings,
    queue: String,
    ctx: SourceContext,
    versions: Versioner,
}

impl Consumer {
    async fn run(mut self) {
        let mut outage = Outage::new(self.ctx.id.clone());
        loop {
            let delay = match self.session(&mut outage).await {
                End::Shutdown => return,
                End::Lost(error) => outage.failed("amqp broker unreachable", &error),
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.ctx.events.closed() => return,
            }
        }
    }

    /// Connects, declares, consumes until the connection ends.
    async fn session(&mut self, outage: &mut Outage) -> End {
        let lost = |error: lapin::Error| End::Lost(error.to_string());
        let props = ConnectionProperties::default().with_connection_name(format!("emperor {}", self.queue).into());
        let conn = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(self.settings.lapin_uri(CONNECT_TIMEOUT), props),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return lost(e),
            Err(_) => return End::Lost("connection timed out".into()),
        };
        let end = self.serve(&conn, outage).await;
        // Close what may still be open (a consumer the broker cancelled, a
        // shutdown); a dead connection just fails here.
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "emperor".into())).await;
        end
    }

    /// Declares the exchange, queue and binding, then consumes until the
    /// connection ends or the emperor shuts down.
    async fn serve(&mut self, conn: &Connection, outage: &mut Outage) -> End {
        let lost = |error: lapin::Error| End::Lost(error.to_string());
        let setup = async {
            let mut channel = conn.create_channel().await?;
            let fanout = ExchangeDeclareOptions::default();
            let exchange = self.settings.exchange.as_str();
            if let Err(e) =
                channel.exchange_declare(exchange.into(), ExchangeKind::Fanout, fanout, FieldTable::default()).await
            {
                // Declared before with other flags (durable, say): use it as it is.
                tracing::debug!(source = %self.ctx.id, error = %e, "exchange exists with other flags; using it as is");
                channel = conn.create_channel().await?;
                let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
                channel.exchange_declare(exchange.into(), ExchangeKind::Fanout, passive, FieldTable::default()).await?;
            }
            let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
            channel.queue_declare(self.queue.as_str().into(), durable, FieldTable::default()).await?;
            let bind = QueueBindOptions::default();
            channel
                .queue_bind(self.queue.as_str().into(), exchange.into(), "".into(), bind, FieldTable::default())
                .await?;
            channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
            let opts = BasicConsumeOptions::default();
            let consumer = channel
                .basic_consume(self.queue.as_str().into(), "emperor".into(), opts, FieldTable::default())
                .await?;
            Ok::<_, lapin::Error>((channel, consumer))
        };
        let (_channel, mut consumer) = match setup.await {
            Ok(pair) => pair,
            Err(e) => return lost(e),
        };
        match outage.is_down() {
            true => {
                tracing::info!(source = %self.ctx.id, queue = %self.queue, "amqp broker reachable again; consuming")
            }
            false => tracing::info!(source = %self.ctx.id, queue = %self.queue, "amqp connected; consuming"),
        }
        outage.ok();
        loop {
            let delivery = tokio::select! {
                d = consumer.next() => d,
                () = self.ctx.events.closed() => return End::Shutdown,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => return End::Lost(e.to_string()),
                None => return End::Lost("the broker ended the consumer".into()),
            };
            let routing_key = delivery.routing_key.as_str().to_owned();
            let acked = match self.event(&routing_key, &delivery.data).await {
                Ok(event) => {
                    let Some(recorded) = self.ctx.send_recorded(event).await else {
                        return End::Shutdown; // not acknowledged: redelivered next time
                    };
                    // Acknowledged once the emperor has recorded its effect; a
                    // crash before that leaves it in the queue for next time.
                    tokio::spawn(async move {
                        if recorded.await.is_ok() {
                            let _ = delivery.ack(BasicAckOptions::default()).await;
                        }
                    });
                    Ok::<(), lapin::Error>(())
                }
                Err(error) => {
                    let body = message::excerpt(&delivery.data);
                    let key = message::excerpt(routing_key.as_bytes());
                    tracing::warn!(source = %self.ctx.id, %error, routing_key = %key, %body, "amqp message refused");
                    delivery.reject(BasicRejectOptions { requeue: false }).await.map(|_| ())
                }
            };
            if let Err(e) = acked {
                return End::Lost(e.to_string());
            }
        }
    }

    /// The event one message asks for.
    async fn event(&mut self, routing_key: &str, body: &[u8]) -> Result<SourceEvent, Refusal> {
        let source = &self.ctx.id;
        match request::classify(routing_key, body)? {
            Request::Remove(name) => {
                tracing::info!(source = %source, vassal = %name, "amqp: empty config, removing");
                Ok(message::remove(source, name))
            }
            Request::Inline { name, config } => {
                let spec = message::inline_upsert(source, name, config, &mut self.versions)?;
                tracing::info!(source = %source, vassal = %spec.name, version = %spec.version, "amqp: inline config");
                Ok(SourceEvent::Upsert(spec))
            }
            Request::Fetch(url) => self.fetched(url).await,
            Request::File { path, name } => match crate::source::util::path::file_version(&path) {
                Ok(Some(version)) => {
                    tracing::info!(source = %source, vassal = %name, path = %path.display(), "amqp: config file");
                    Ok(SourceEvent::Upsert(message::file_spec(source, name, path, version)))
                }
                Ok(None) => {
                    tracing::info!(source = %source, vassal = %name, path = %path.display(), "amqp: not a regular file, removing");
                    Ok(message::remove(source, name))
                }
                Err(error) => Err(Refusal::Read { path: path.display().to_string(), error }),
            },
        }
    }

    /// Fetches an `http://` config: 200 upserts it inline, any other status removes it.
    async fn fetched(&mut self, raw: &str) -> Result<SourceEvent, Refusal> {
        let url = http::Url::parse(raw)?;
        let name = VassalName::parse(&url.last_segment).map_err(MessageError::from)?;
        let response = http::get(&url, raw, MAX_CONFIG, FETCH_TIMEOUT).await?;
        let source = &self.ctx.id;
        if response.status != 200 {
            tracing::info!(source = %source, vassal = %name, url = raw, status = response.status, "amqp: config URL answered non-200, removing");
            return Ok(message::remove(source, name));
        }
        let spec = message::inline_upsert(source, name, &response.body, &mut self.versions)?;
        tracing::info!(source = %source, vassal = %spec.name, url = raw, version = %spec.version, "amqp: config fetched");
        Ok(SourceEvent::Upsert(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer() -> Consumer {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let (_stop, shutdown) = crate::source::Shutdown::pair();
        let ctx = SourceContext::new(SourceId("amqp://h".into()), tx, Duration::from_secs(60), "0123".into(), shutdown);
        Consumer { settings: parse("h").unwrap(), queue: "q".into(), ctx, versions: Versioner::new() }
    }

    fn event(c: &mut Consumer, key: &str, body: &[u8]) -> Result<SourceEvent, Refusal> {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(c.event(key, body))
    }

    #[test]
    fn messages() {
        let mut c = consumer();
        let Ok(SourceEvent::Upsert(a)) = event(&mut c, "a.ini", b"[uwsgi]\n") else { panic!("inline") };
        let Ok(SourceEvent::Upsert(b)) = event(&mut c, "a.ini", b"[uwsgi]\n") else { panic!("inline") };
        assert_ne!(a.version, b.version, "a re-sent config reloads");
        assert!(matches!(event(&mut c, "a.ini", b""), Ok(SourceEvent::Remove { .. })));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        std::fs::write(&path, "uwsgi:\n").unwrap();
        let body = format!("{}\n", path.display());
        let Ok(SourceEvent::Upsert(f)) = event(&mut c, "", body.as_bytes()) else { panic!("file") };
        assert_eq!((f.name.as_str(), f.config), ("f.yaml", reconciler::ConfigRef::File(path.clone())));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(event(&mut c, "", body.as_bytes()), Ok(SourceEvent::Remove { .. })));
        for (key, body) in
            [("../evil.ini", &b"x"[..]), ("a/b.ini", b"x"), ("", b"relative.ini"), ("", b"/etc/../x.ini")]
        {
            assert!(event(&mut c, key, body).is_err(), "{key:?} {body:?}");
        }
        assert!(event(&mut c, "a.ini", &vec![b'x'; MAX_CONFIG + 1]).is_err());
        assert!(event(&mut c, "a.ini", b"\xff\xfe").is_err());
        assert!(event(&mut c, "", b"https://h/a.ini").is_err());
    }
}
