//! The Open DMX USB bridge with a pseudo-terminal as the line: the port is set to 250,000 baud,
//! 8 data bits, 2 stop bits, no parity (read back from the terminal's own settings), and the
//! line carries packets of the start code 0 and 512 slots, one after another, without pause
//! while nothing changes (the dongle keeps nothing), with changes from the router in the next
//! packet. A pty has no break condition, so the break and mark after break are not observable
//! here; the order of the calls is in `open_dmx.rs`.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clasp_bridge::RouterLink;
use clasp_bridge::lighting::dmx_bridge::{Direction, DmxBridge, DmxConfig, Interface};
use clasp_bridge::stats::BridgeStats;
use clasp_client::{Client, ReconnectPolicy};
use serialport::{DataBits, Parity, SerialPort, StopBits, TTYPort};
use support::Router;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Packets of 513 bytes read from the pty's far end on a thread of their own.
fn packets(mut master: TTYPort) -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    master.set_timeout(Duration::from_millis(200)).unwrap();
    std::thread::spawn(move || {
        loop {
            let mut p = vec![0u8; 513];
            let mut got = 0;
            while got < p.len() {
                match master.read(&mut p[got..]) {
                    Ok(0) => return,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        if tx.is_closed() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            if tx.send(p).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn the_line_is_250k_8n2_and_carries_every_frame() {
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    c.set_confirmed("/dmx/1/1", 1.0).await.unwrap();
    let (master, slave) = TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let mut cfg = DmxConfig::new(&path);
    cfg.interface = Interface::EnttecOpen;
    let link = RouterLink::connect(&r.url, "dmx", None).await.unwrap();
    let b = DmxBridge::start(link, cfg).await.unwrap();
    // The terminal's settings, read from the far end (a pty master reports its slave's).
    assert_eq!(master.baud_rate().unwrap(), 250_000);
    assert_eq!(master.data_bits().unwrap(), DataBits::Eight);
    assert_eq!(master.stop_bits().unwrap(), StopBits::Two);
    assert_eq!(master.parity().unwrap(), Parity::None);
    let mut rx = packets(master.try_clone_native().unwrap());
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));

    let recv = async |rx: &mut mpsc::UnboundedReceiver<Vec<u8>>| {
        support::within("a packet on the line", rx.recv())
            .await
            .unwrap()
    };
    // What the router held goes out first: start code 0, channel 1 at full.
    let first = recv(&mut rx).await;
    assert_eq!(first[..3], [0, 255, 0]);
    assert!(first[3..].iter().all(|b| *b == 0));
    // A change shows in a later packet: 0.5 is 128 (rounded), 512 an integer.
    c.set("/dmx/1/2", 0.5).await.unwrap();
    c.set_confirmed("/dmx/1/512", 42).await.unwrap();
    let changed = support::within("the changed packet", async {
        loop {
            let p = recv(&mut rx).await;
            assert_eq!(p[0], 0, "every packet starts with the start code");
            if p[2] == 128 && p[512] == 42 {
                return p;
            }
        }
    })
    .await;
    assert_eq!(changed[..4], [0, 255, 128, 0]);
    // Nothing changes, and the line keeps going: the same packet again and again.
    let t = Instant::now();
    let mut same = 0;
    while same < 5 {
        assert_eq!(recv(&mut rx).await, changed);
        same += 1;
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.errors.load(Relaxed), 0);
    assert!(stats.messages_out.load(Relaxed) >= 7);
    stop.cancel();
    task.await.unwrap().unwrap();
    drop(slave);
}

#[tokio::test]
async fn open_dmx_refuses_input_and_a_missing_port() {
    let r = Router::start().await;
    let link = RouterLink::connect(&r.url, "dmx", None).await.unwrap();
    let mut cfg = DmxConfig::new("/nonexistent/ttyUSB9");
    cfg.interface = Interface::EnttecOpen;
    let e = DmxBridge::start(link.clone(), cfg.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot open the Open DMX line /nonexistent/ttyUSB9"),
        "{e}"
    );
    cfg.direction = Direction::Input;
    let e = DmxBridge::start(link, cfg).await.unwrap_err().to_string();
    assert!(e.contains("Open DMX USB dongle only sends"), "{e}");
}
