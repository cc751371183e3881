//! The subscribers' connections: the hand-written client, and rumqttc for comparison.

use super::*;

/// Connects, CONNECT → CONNACK, then (with a topic) SUBSCRIBE → SUBACK.
pub(super) async fn open_raw(
    addr: SocketAddr,
    id: &str,
    topic: Option<&str>,
) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(SETUP_WAIT, async {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        s.write_all(&connect_packet(id)).await?;
        let mut buf = Vec::new();
        let (first, body) = read_packet(&mut s, &mut buf).await?;
        if first != 0x20 || body.len() != 2 || body[1] != 0 {
            bail!("CONNECT refused: packet {first:#x} {body:?}");
        }
        if let Some(t) = topic {
            s.write_all(&subscribe_packet(t)).await?;
            let (first, body) = read_packet(&mut s, &mut buf).await?;
            if first != 0x90 || body.get(2).is_none_or(|&c| c > 2) {
                bail!("SUBSCRIBE refused: packet {first:#x} {body:?}");
            }
        }
        if !buf.is_empty() {
            bail!("unexpected bytes after the setup");
        }
        Ok(s)
    })
    .await
    .context("setup timed out")?
}

/// Reads PUBLISH packets until `stop` or the broker closes the connection.
pub(super) async fn run_raw(
    mut s: TcpStream,
    mut r: Receiver,
    mut stop: watch::Receiver<bool>,
) -> SubStats {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            let n = buf.len() * 2;
            buf.resize(n, 0);
        }
        let n = tokio::select! {
            biased;
            read = s.read(&mut buf[filled..]) => match read {
                Ok(0) | Err(_) => return r.disconnected(),
                Ok(n) => n,
            },
            _ = stop.changed() => return r.stats,
        };
        filled += n;
        let now = r.shared.now_us();
        let mut at = 0;
        loop {
            match split_packet(&buf[at..filled]) {
                Ok(Some((first, body))) => {
                    if first >> 4 == 3
                        && let Some(p) =
                            publish_payload(first, &buf[at + body.start..at + body.end])
                    {
                        r.on_payload(p, now);
                    }
                    at += body.end;
                }
                Ok(None) => break,
                Err(_) => return r.disconnected(),
            }
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        r.commit();
    }
}

/// Connects and subscribes with rumqttc; returns its client (kept alive) and event loop.
pub(super) async fn open_rumqttc(
    addr: SocketAddr,
    id: &str,
    topic: &str,
) -> anyhow::Result<(rumqttc::AsyncClient, rumqttc::EventLoop)> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(KEEP_ALIVE_SECS.into()));
    o.set_clean_session(true);
    let (client, mut el) = AsyncClient::new(o, 16);
    tokio::time::timeout(SETUP_WAIT, async {
        while !matches!(el.poll().await?, Event::Incoming(Packet::ConnAck(_))) {}
        client.subscribe(topic, QoS::AtMostOnce).await?;
        loop {
            if let Event::Incoming(Packet::SubAck(a)) = el.poll().await? {
                if a.return_codes.contains(&SubscribeReasonCode::Failure) {
                    bail!("SUBSCRIBE refused");
                }
                return anyhow::Ok(());
            }
        }
    })
    .await
    .context("setup timed out")??;
    Ok((client, el))
}

/// Polls rumqttc's event loop until `stop` or the connection ends.
pub(super) async fn run_rumqttc(
    client: rumqttc::AsyncClient,
    mut el: rumqttc::EventLoop,
    mut r: Receiver,
    mut stop: watch::Receiver<bool>,
) -> SubStats {
    use rumqttc::{Event, Packet};
    loop {
        tokio::select! {
            biased;
            ev = el.poll() => match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = r.shared.now_us();
                    r.on_payload(&p.payload, now);
                    r.commit();
                }
                Ok(_) => {}
                Err(_) => return r.disconnected(),
            },
            _ = stop.changed() => {
                drop(client);
                return r.stats;
            }
        }
    }
}
