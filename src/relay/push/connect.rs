//! One attempt's setup: TCP connect, TLS for rtmps://, then the handshake and the
//! connect/createStream/publish exchange until the ingest accepts the publish, all
//! under one deadline. The connection then goes to the [`Forwarder`].

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::forwarder::Forwarder;
use super::shared_ingest::SharedIngest;
use super::{Ended, PushError, log_event};
use crate::hub::Subscriber;
use crate::relay::RelayContext;
use crate::relay::destination::DestinationSpec;
use crate::relay::status::{DestinationStatus, State};
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use crate::rtmp::handshake::PACKET_SIZE;
use crate::transport::socket::OverTcp;
use crate::transport::{self, ReadPolicy, write_out};

/// What the client's handshake sends (C0+C1, then C2): the first bytes of every
/// connection, which `bytes_out` has never counted.
const HANDSHAKE_OUT: u64 = 1 + 2 * PACKET_SIZE as u64;

/// One connection attempt, from the TCP connect to the end of the live phase.
pub(super) async fn attempt(
    ctx: &RelayContext,
    spec: &DestinationSpec,
    subscriber: &Subscriber,
    status: &Arc<DestinationStatus>,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> Result<Ended, PushError> {
    let target = &spec.target;
    // One deadline for the whole setup: TCP connect and TLS here, then the handshake and
    // the publish exchange, which the session times from the same start.
    let started = Instant::now();
    let deadline = started + ctx.connect_timeout;
    let tcp = timeout_at(
        deadline,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| PushError::Timeout(ctx.connect_timeout))?
    .map_err(PushError::Connect)?;
    transport::socket::send_at_once(&tcp)?;
    if target.tls {
        let tls = timeout_at(
            deadline,
            crate::relay::tls::connect(&ctx.tls, &target.host, tcp),
        )
        .await
        .map_err(|_| PushError::Timeout(ctx.connect_timeout))??;
        publish(ctx, spec, tls, started, subscriber, status, stop, ended).await
    } else {
        publish(ctx, spec, tcp, started, subscriber, status, stop, ended).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish<S>(
    ctx: &RelayContext,
    spec: &DestinationSpec,
    mut io: S,
    started: Instant,
    subscriber: &Subscriber,
    status: &Arc<DestinationStatus>,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> Result<Ended, PushError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static + OverTcp,
{
    let mut buf = ReadPolicy::PUSH.buffer();
    let config = ClientConfig {
        app: spec.target.app.clone(),
        tc_url: spec.target.tc_url.clone(),
        stream_name: spec.target.stream_name.clone(),
        flash_ver: ctx.flash_ver.clone(),
        chunk_size: ctx.chunk_size,
        limits: ctx.limits,
        publish_timeout: Some(ctx.connect_timeout),
        play: false,
    };
    let mut session = ClientSession::new(config, started.into_std());
    let mut setup_out = 0;
    loop {
        let deadline = session.poll_timeout();
        tokio::select! {
            ready = until_publishing(&mut io, &mut buf, &mut session, &mut setup_out, status) => {
                ready?;
                break;
            }
            () = sleep_until(deadline) => session.handle_timeout(Instant::now().into_std())?,
            () = stop.cancelled() => return Ok(Ended::Stopped),
            () = ended.cancelled() => return Ok(Ended::StreamEnded),
        }
    }
    status.set_state(State::Live);
    tracing::info!("live");
    let ingest = SharedIngest::new(io, session, Arc::clone(status));
    Forwarder::new(ingest, buf, ctx.stall_timeout)
        .run(subscriber, stop)
        .await
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The setup: writes what the session queued (the handshake, connect, then the calls each
/// reply triggers) before waiting for the next reply, until the ingest accepts the publish.
/// `setup_out` counts the bytes written so far (see [`send_setup`]).
async fn until_publishing<S>(
    io: &mut S,
    buf: &mut BytesMut,
    session: &mut ClientSession,
    setup_out: &mut u64,
    status: &DestinationStatus,
) -> Result<(), PushError>
where
    S: AsyncRead + AsyncWrite + Unpin + OverTcp,
{
    loop {
        send_setup(io, session, setup_out, status).await?;
        transport::socket::ack_at_once(io.tcp());
        read_more(io, buf).await?;
        while let Some(event) = session.poll(buf)? {
            if let ClientEvent::Publishing { .. } = event {
                send_setup(io, session, setup_out, status).await?;
                return Ok(());
            }
            log_event(&event);
        }
    }
}

/// Writes what the session queued during the setup. `bytes_out` counts all of it but the
/// handshake (C0+C1 and C2, the first [`HANDSHAKE_OUT`] bytes), which it never counted.
async fn send_setup<S>(
    io: &mut S,
    session: &mut ClientSession,
    setup_out: &mut u64,
    status: &DestinationStatus,
) -> Result<(), PushError>
where
    S: AsyncWrite + Unpin,
{
    let counted = setup_out.saturating_sub(HANDSHAKE_OUT);
    *setup_out += write_out(io, session.out()).await?;
    status.add_bytes_out(setup_out.saturating_sub(HANDSHAKE_OUT) - counted);
    Ok(())
}

async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> Result<(), PushError> {
    match ReadPolicy::PUSH.read(io, buf).await? {
        0 => Err(PushError::Closed),
        _ => Ok(()),
    }
}
