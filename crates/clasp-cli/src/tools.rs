//! The everyday tools: `clasp set`, `get`, `sub`, `emit`, `query`, `ping` and `snapshot`.
//!
//! Each one opens one connection (no reconnecting), does its work, closes the connection with a
//! WebSocket Close and exits. Human output is one line per item; `--json` gives JSON instead
//! (one object or array, or one object per line for `sub`).

use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use clasp_client::json::{parse_lenient, to_json};
use clasp_client::{
    Client, ClockStatus, ParamValue, ReconnectPolicy, SignalDef, SignalType, SubscribeOptions,
    Update, Value,
};
use serde_json::{Value as Json, json};

/// Pause between two pings of `clasp ping`.
const PING_INTERVAL: Duration = Duration::from_millis(200);

/// Connection and output options shared by every tool.
#[derive(Debug, Clone, Args)]
pub(crate) struct Conn {
    /// The router's URL.
    #[arg(long, env = "CLASP_URL", default_value = "ws://127.0.0.1:7330")]
    pub(crate) url: String,
    /// Authentication token sent in HELLO.
    #[arg(long, env = "CLASP_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also trust this PEM certificate for wss:// (a router's self-signed certificate or a
    /// private CA).
    #[arg(long, env = "CLASP_CA_CERT", value_name = "FILE")]
    pub(crate) ca_cert: Option<std::path::PathBuf>,
    /// Seconds to wait for the connection and for each answer of the router.
    #[arg(long, default_value = "5", value_parser = parse_timeout, value_name = "SECONDS")]
    pub(crate) timeout: Duration,
}

/// The tools, as subcommands of `clasp`.
#[derive(Debug, Subcommand)]
pub(crate) enum Tool {
    /// Write a param and wait for the router's confirmation.
    Set(SetArgs),
    /// Read a param.
    Get(GetArgs),
    /// Print the updates under a pattern as they arrive.
    Sub(SubArgs),
    /// Fire an event.
    Emit(EmitArgs),
    /// List the announced signals under a pattern.
    Query(QueryArgs),
    /// Measure the round trip to the router and the clock offset.
    Ping(PingArgs),
    /// Print the current params under a pattern.
    Snapshot(SnapshotArgs),
}

/// `clasp set ADDR VALUE`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The param's address, e.g. /lights/1/level.
    address: String,
    /// The value: JSON when it parses (0.5, true, [1,2], {"a":1}, "\"7\""), else a string.
    #[arg(allow_negative_numbers = true)]
    value: String,
    #[command(flatten)]
    conn: Conn,
}

/// `clasp get ADDR`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The param's address.
    address: String,
    #[command(flatten)]
    conn: Conn,
}

/// `clasp sub PATTERN`.
#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    /// The pattern (`*` one segment, `**` any number), e.g. /lights/**.
    pattern: String,
    /// Exit after this many updates.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Only these signal types (comma-separated: param, event, stream, gesture, timeline).
    #[arg(long, value_delimiter = ',', value_parser = parse_signal_type)]
    types: Vec<SignalType>,
    #[command(flatten)]
    conn: Conn,
}

/// `clasp emit ADDR [VALUE]`.
#[derive(Debug, Args)]
pub(crate) struct EmitArgs {
    /// The event's address.
    address: String,
    /// The payload, parsed as for `clasp set` [default: null].
    #[arg(allow_negative_numbers = true)]
    value: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// `clasp query PATTERN`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The pattern, e.g. /**.
    pattern: String,
    #[command(flatten)]
    conn: Conn,
}

/// `clasp ping`.
#[derive(Debug, Args)]
pub(crate) struct PingArgs {
    /// How many pings to send (200 ms apart).
    #[arg(long, short = 'c', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    #[command(flatten)]
    conn: Conn,
}

/// `clasp snapshot [PATTERN]`.
#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The pattern.
    #[arg(default_value = "/**")]
    pattern: String,
    #[command(flatten)]
    conn: Conn,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("the timeout must be more than 0 seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

pub(crate) fn parse_signal_type(s: &str) -> Result<SignalType, String> {
    SignalType::from_name(s.trim()).ok_or_else(|| {
        format!("unknown signal type `{s}` (expected param, event, stream, gesture or timeline)")
    })
}

/// Runs a tool to completion on its own runtime.
pub(crate) fn run(tool: Tool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        match tool {
            Tool::Set(a) => set(a).await,
            Tool::Get(a) => get(a).await,
            Tool::Sub(a) => sub(a).await,
            Tool::Emit(a) => emit(a).await,
            Tool::Query(a) => query(a).await,
            Tool::Ping(a) => ping(a).await,
            Tool::Snapshot(a) => snapshot(a).await,
        }
    })
}

/// Connects for a one-shot tool: no reconnecting, the `--timeout` for everything.
pub(crate) async fn connect(
    conn: &Conn,
    tool: &str,
    sync_interval: Option<Duration>,
) -> anyhow::Result<Client> {
    connect_with(conn, tool, sync_interval, None).await
}

/// [`connect`], announcing `features` in HELLO instead of the default ones.
pub(crate) async fn connect_with(
    conn: &Conn,
    tool: &str,
    sync_interval: Option<Duration>,
    features: Option<&[&str]>,
) -> anyhow::Result<Client> {
    let mut b = Client::builder(conn.url.clone())
        .name(format!("clasp {tool}"))
        .reconnect(ReconnectPolicy::disabled())
        .connect_timeout(conn.timeout)
        .request_timeout(conn.timeout);
    if let Some(t) = &conn.token {
        b = b.token(t.clone());
    }
    if let Some(p) = &conn.ca_cert {
        let pem =
            std::fs::read(p).with_context(|| format!("cannot read certificate {}", p.display()))?;
        b = b.add_root_certificate_pem(pem);
    }
    if let Some(i) = sync_interval {
        b = b.sync_interval(i);
    }
    if let Some(f) = features {
        b = b.features(f.iter().copied());
    }
    Ok(b.connect().await?)
}

/// Connects, runs `f`, and closes the connection whatever `f` returned.
async fn session<F, Fut>(conn: &Conn, tool: &str, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let client = connect(conn, tool, None).await?;
    let result = f(client.clone()).await;
    client.close().await;
    result
}

/// Writes one line to stdout and flushes it. Returns `false` when the reader has gone away
/// (`clasp sub ... | head`), which is not an error.
fn out(line: impl Display) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

fn opt_str(s: Option<&clasp_client::Str>) -> Json {
    s.map_or(Json::Null, |s| Json::String(s.to_string()))
}

fn param_json(p: &ParamValue) -> Json {
    json!({
        "address": p.address.to_string(),
        "value": to_json(&p.value),
        "revision": p.revision,
        "writer": opt_str(p.writer.as_ref()),
        "timestamp": p.timestamp,
    })
}

async fn set(a: SetArgs) -> anyhow::Result<()> {
    let value = parse_lenient(&a.value);
    let json_out = a.conn.json;
    session(&a.conn, "set", |c| async move {
        let revision = c.set_confirmed(&a.address, value.clone()).await?;
        let v = to_json(&value);
        if json_out {
            out(json!({ "address": a.address, "value": v, "revision": revision }))?;
        } else {
            out(format_args!("{} = {v} (revision {revision})", a.address))?;
        }
        Ok(())
    })
    .await
}

async fn get(a: GetArgs) -> anyhow::Result<()> {
    let json_out = a.conn.json;
    session(&a.conn, "get", |c| async move {
        let p = c.get_param(&a.address).await?;
        if json_out {
            out(param_json(&p))?;
        } else {
            out(to_json(&p.value))?;
        }
        Ok(())
    })
    .await
}

/// The human line for an update: `/addr = <json>  [param rev 3]`.
fn update_line(u: &Update) -> String {
    let mut tag = u.kind.name().to_string();
    if let Some(r) = u.revision {
        tag.push_str(&format!(" rev {r}"));
    }
    if let Some(id) = u.gesture_id {
        tag.push_str(&format!(" {id}"));
    }
    if let (SignalType::Gesture, Some(p)) = (u.kind, u.phase) {
        tag.push_str(&format!(" {}", p.name()));
    }
    format!("{} = {}  [{tag}]", u.address, to_json(&u.value))
}

fn update_json(u: &Update) -> Json {
    let mut j = json!({
        "address": u.address.to_string(),
        "value": to_json(&u.value),
        "kind": u.kind.name(),
        "revision": u.revision,
        "timestamp": u.timestamp,
    });
    if u.kind == SignalType::Gesture
        && let Some(map) = j.as_object_mut()
    {
        map.insert("gesture_id".into(), json!(u.gesture_id));
        map.insert("phase".into(), json!(u.phase.map(|p| p.name())));
    }
    j
}

async fn sub(a: SubArgs) -> anyhow::Result<()> {
    let json_out = a.conn.json;
    session(&a.conn, "sub", |c| async move {
        let mut sub = c
            .subscribe_with(&a.pattern, SubscribeOptions::new().types(a.types))
            .await?;
        // The router handles a session's messages in order: once the PONG is back, the
        // subscription is in place and nothing written from now on can be missed.
        c.ping().await?;
        // The handler is in place before "subscribed" is printed, so a Ctrl-C right after it
        // ends the tool cleanly instead of killing it.
        let ctrl_c = interrupted()?;
        tokio::pin!(ctrl_c);
        eprintln!("subscribed to {}", a.pattern);
        let mut seen = 0u64;
        while a.count.is_none_or(|n| seen < n) {
            let update = tokio::select! {
                u = sub.recv() => u,
                () = &mut ctrl_c => return Ok(()),
            };
            let Some(u) = update else {
                bail!("the connection to the router was lost");
            };
            let line = if json_out {
                update_json(&u).to_string()
            } else {
                update_line(&u)
            };
            if !out(line)? {
                return Ok(());
            }
            seen += 1;
        }
        Ok(())
    })
    .await
}

/// A future that resolves on Ctrl-C (SIGINT), with the handler installed now.
fn interrupted() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sig = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
        Ok(async move {
            sig.recv().await;
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

async fn emit(a: EmitArgs) -> anyhow::Result<()> {
    let value = a.value.as_deref().map_or(Value::Null, parse_lenient);
    let json_out = a.conn.json;
    session(&a.conn, "emit", |c| async move {
        c.emit(&a.address, value.clone()).await?;
        // Events are not acknowledged; a round trip behind it makes sure the router has it
        // before the connection closes.
        c.ping().await?;
        let v = to_json(&value);
        if json_out {
            out(json!({ "address": a.address, "value": v }))?;
        } else {
            out(format_args!("emitted {} = {v}", a.address))?;
        }
        Ok(())
    })
    .await
}

fn signal_json(s: &SignalDef) -> Json {
    json!({
        "address": s.address.to_string(),
        "type": s.signal.name(),
        "datatype": opt_str(s.datatype.as_ref()),
        "access": opt_str(s.access.as_ref()),
    })
}

async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let json_out = a.conn.json;
    session(&a.conn, "query", |c| async move {
        let mut signals = c.query(&a.pattern).await?;
        signals.sort_by(|x, y| x.address.cmp(&y.address));
        if json_out {
            out(Json::Array(signals.iter().map(signal_json).collect()))?;
            return Ok(());
        }
        if signals.is_empty() {
            eprintln!("no announced signals match {}", a.pattern);
        }
        let width = signals.iter().map(|s| s.address.len()).max().unwrap_or(0);
        for s in &signals {
            let mut line = format!("{:width$}  {}", s.address.to_string(), s.signal.name());
            for extra in [&s.datatype, &s.access].into_iter().flatten() {
                line.push_str(&format!("  {extra}"));
            }
            if !out(line.trim_end())? {
                break;
            }
        }
        Ok(())
    })
    .await
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn clock_json(s: &ClockStatus) -> Json {
    json!({
        "offset_us": s.offset_us,
        "rtt_us": s.rtt_us,
        "jitter_us": s.jitter_us,
        "samples": s.samples,
        "quality": s.quality,
    })
}

async fn ping(a: PingArgs) -> anyhow::Result<()> {
    let conn = &a.conn;
    // Clock-sync exchanges as often as the pings, so the offset printed at the end rests on
    // more than the handshake.
    let c = connect(conn, "ping", Some(PING_INTERVAL)).await?;
    let result = ping_loop(&c, &a).await;
    c.close().await;
    result
}

async fn ping_loop(c: &Client, a: &PingArgs) -> anyhow::Result<()> {
    let url = &a.conn.url;
    let router = c.router_name().unwrap_or_default();
    if !a.conn.json {
        out(format_args!("PING {url} ({router})"))?;
    }
    let mut rtts = Vec::with_capacity(a.count as usize);
    for seq in 1..=a.count {
        if seq > 1 {
            tokio::time::sleep(PING_INTERVAL).await;
        }
        let rtt = c.ping().await?;
        if !a.conn.json {
            out(format_args!(
                "pong from {url}: seq={seq} time={:.3} ms",
                ms(rtt)
            ))?;
        }
        rtts.push(rtt);
    }
    let min = rtts.iter().min().copied().unwrap_or_default();
    let max = rtts.iter().max().copied().unwrap_or_default();
    let avg = rtts.iter().sum::<Duration>() / a.count;
    let clock = c.clock();
    if a.conn.json {
        out(json!({
            "url": url,
            "router": router,
            "session": c.session_id(),
            "count": a.count,
            "rtt_ms": rtts.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "min_ms": ms(min),
            "avg_ms": ms(avg),
            "max_ms": ms(max),
            "clock": clock_json(&clock),
        }))?;
    } else {
        out(format_args!(
            "{} pings: min/avg/max = {:.3}/{:.3}/{:.3} ms",
            a.count,
            ms(min),
            ms(avg),
            ms(max)
        ))?;
        out(format_args!(
            "clock: offset {:+} us, rtt {} us, jitter {} us, quality {:.2} ({} samples)",
            clock.offset_us, clock.rtt_us, clock.jitter_us, clock.quality, clock.samples
        ))?;
    }
    Ok(())
}

/// A JSON object of address -> value, one param per line.
fn human_snapshot(params: &[ParamValue]) -> String {
    if params.is_empty() {
        return "{}".into();
    }
    let lines: Vec<String> = params
        .iter()
        .map(|p| {
            let key = Json::String(p.address.to_string());
            format!("  {key}: {}", to_json(&p.value))
        })
        .collect();
    format!("{{\n{}\n}}", lines.join(",\n"))
}

async fn snapshot(a: SnapshotArgs) -> anyhow::Result<()> {
    let json_out = a.conn.json;
    session(&a.conn, "snapshot", |c| async move {
        let params = c.snapshot(&a.pattern).await?;
        let text = if json_out {
            Json::Array(params.iter().map(param_json).collect()).to_string()
        } else {
            human_snapshot(&params)
        };
        out(text)?;
        Ok(())
    })
    .await
}
