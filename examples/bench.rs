//! Load generator and result table for `make bench` (`scripts/bench.sh` runs the phases).
//!
//! ```text
//! bench load    --url URL [-c 64] [--duration 10 | --count N] [--rate R] [--mix sms|mixed]
//!               [--scheduled-ahead] [--events] [--wait-drain] [--database-url DB]
//!               [--phase NAME] [--results FILE] [--serve-pid PID] [--worker-pid PID ...]
//! bench drain   --database-url DB --initial N --since-ms EPOCH_MS [--phase ...]
//! bench load    ... --paths FILE [--follow-cursor]   (GET list pages instead of sends)
//! bench seed    --database-url DB --messages N [--per-conversation 100]
//! bench backlog --database-url DB
//! bench table   --results FILE
//! ```
//!
//! `load` keeps one keep-alive HTTP/1.1 connection per concurrent sender and writes each
//! request into a reused byte buffer (a distinct recipient and body each time, no JSON value
//! built per request), spread over `--threads` load threads that each run their own
//! single-threaded event loop, as `wrk -t` does; latencies go into a log-bucket histogram
//! (< 1% resolution). Without
//! `--rate` each sender sends its next request as soon as the previous one is answered
//! (closed loop); with `--rate R` the senders together start R requests per second on a fixed
//! schedule and latency counts from the scheduled start (open loop, so a stall shows in the
//! percentiles instead of slowing the load down).
//!
//! The backlog (messages `pending`, `sending` or `retry`) is counted in the database itself
//! (PostgreSQL or the SQLite file), not through the API's list `total`.
//!
//! Each phase appends one tab-separated row to `--results`; `table` prints them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DRAIN_POLL: Duration = Duration::from_millis(100);
const BACKLOG_SQL: &str =
    "select count(*) from messages where status in ('pending', 'sending', 'retry')";
/// 1 while any message waits, else 0: what the drain polls. Counting the whole backlog on
/// every poll cost PostgreSQL 6-10 ms a time, a few percent of the run it was measuring.
const ANY_BACKLOG_SQL: &str = "select count(*) from (select 1 from messages
     where status in ('pending', 'sending', 'retry') limit 1) as waiting";
const SENT_SQL: &str = "select count(*) from messages where status in ('sent', 'delivered')";

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Load generator and result table for make bench"
)]
struct Cli {
    /// Load threads (each runs its share of the senders on its own event loop)
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drive POST /api/v1/messages/send and record one result row
    Load(LoadArgs),
    /// Wait for the backlog to empty and record the drain rate
    Drain(DrainArgs),
    /// Store messages straight into a PostgreSQL database, for the list phase
    Seed(SeedArgs),
    /// Print the number of messages waiting to be delivered
    Backlog {
        #[arg(long)]
        database_url: String,
    },
    /// Print the result rows as one table
    Table {
        #[arg(long)]
        results: String,
    },
}

#[derive(ClapArgs, Debug, Clone)]
struct Row {
    /// Name of the phase in the table
    #[arg(long, default_value = "load")]
    phase: String,
    /// File to append the result row to
    #[arg(long)]
    results: Option<String>,
    /// Process id of the API, for its memory (VmHWM, VmRSS)
    #[arg(long)]
    serve_pid: Option<u32>,
    /// Process id of a worker (repeat for several), for its memory
    #[arg(long)]
    worker_pid: Vec<u32>,
}

#[derive(ClapArgs, Debug, Clone)]
struct LoadArgs {
    /// Base URL of the API (http only)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent senders (one connection each)
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Length of the phase in seconds (ignored with --count)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Send exactly this many requests instead of running for --duration
    #[arg(long)]
    count: Option<u64>,
    /// Requests started per second by all senders together (open loop); closed loop without
    #[arg(long)]
    rate: Option<f64>,
    /// Message mix: `sms` only, or `mixed` (70% sms, 10% mms, 20% email)
    #[arg(long, value_enum, default_value_t = Mix::Sms)]
    mix: Mix,
    /// Schedule every message 30 days ahead (`send_at`)
    #[arg(long)]
    scheduled_ahead: bool,
    /// Register a local receiver subscribed to every event type; report events/s
    #[arg(long)]
    events: bool,
    /// Read instead of send: GET the paths in this file (one per line, in turn); an answer
    /// counts when it is 200
    #[arg(long)]
    paths: Option<String>,
    /// With --paths: each sender follows `next_cursor` from its answers, page after page,
    /// and starts on its next path after the last page
    #[arg(long, requires = "paths")]
    follow_cursor: bool,
    /// After the load, wait for the backlog to empty (needs --database-url)
    #[arg(long)]
    wait_drain: bool,
    /// The service's database, to count the backlog (postgres://… or sqlite://…)
    #[arg(long)]
    database_url: Option<String>,
    /// Longest wait for the backlog (and events) after the load, in seconds
    #[arg(long, default_value_t = 600.0)]
    drain_timeout: f64,
    #[command(flatten)]
    row: Row,
}

#[derive(ClapArgs, Debug)]
struct DrainArgs {
    #[arg(long)]
    database_url: String,
    /// Backlog when the workers were started
    #[arg(long)]
    initial: u64,
    /// When the workers were started, in milliseconds since the Unix epoch
    #[arg(long)]
    since_ms: u64,
    #[arg(long, default_value_t = 600.0)]
    drain_timeout: f64,
    #[command(flatten)]
    row: Row,
}

#[derive(ClapArgs, Debug)]
struct SeedArgs {
    #[arg(long)]
    database_url: String,
    /// Messages to store
    #[arg(long)]
    messages: u64,
    /// Messages per conversation (each conversation's spread over the whole period)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    per_conversation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mix {
    Sms,
    Mixed,
}

// ---------------------------------------------------------------------------------------
// Latency histogram

/// Sub-buckets per power of two: a bucket is at most 1/128 (< 0.8%) of its value wide.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) << SUB_BITS;

/// Log-bucket histogram of microsecond values: values below 256 are exact, larger ones
/// land in buckets less than 1% wide.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let shift = exp - SUB_BITS;
        (((shift as u64 + 1) << SUB_BITS) + ((v >> shift) & (SUB - 1))) as usize
    }

    /// Smallest and largest value of a bucket.
    fn bounds(index: usize) -> (u64, u64) {
        let i = index as u64;
        if i < SUB {
            return (i, i);
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = (SUB + (i & (SUB - 1))) << shift;
        (low, low + (1 << shift) - 1)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Nearest-rank percentile: the middle of the bucket holding it (never above the max).
    fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = Self::bounds(i);
                return (low + (high - low) / 2).min(self.max);
            }
        }
        self.max
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// Where requests go: the address to connect to and the header lines that never change.
struct Target {
    addr: SocketAddr,
    host: String,
    path_prefix: String,
}

async fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let with_port = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let addr = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("--url {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url {url}: no address"))?;
    Ok(Target {
        addr,
        host: host.to_owned(),
        path_prefix: path.to_owned(),
    })
}

/// Writes one request into `out`: a send (headers and a distinct JSON body) or, with
/// `reads`, a GET of one of the list paths.
struct RequestWriter {
    head: Vec<u8>,
    body: Vec<u8>,
    mix: Mix,
    send_at: Option<String>,
    reads: Option<Reads>,
}

/// GET requests of list paths, each sender paging on with the cursor it was given.
struct Reads {
    prefix: String,
    host: String,
    paths: Arc<Vec<String>>,
    follow_cursor: bool,
    /// The path of the last request and the cursor its answer gave, when there is a page
    /// after it.
    path: String,
    cursor: Option<String>,
}

impl RequestWriter {
    fn new(target: &Target, mix: Mix, send_at: Option<String>) -> Self {
        let head = format!(
            "POST {}/api/v1/messages/send HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
            target.path_prefix, target.host
        )
        .into_bytes();
        Self {
            head,
            body: Vec::with_capacity(512),
            mix,
            send_at,
            reads: None,
        }
    }

    fn reading(target: &Target, paths: Arc<Vec<String>>, follow_cursor: bool) -> Self {
        let mut writer = Self::new(target, Mix::Sms, None);
        writer.reads = Some(Reads {
            prefix: target.path_prefix.clone(),
            host: target.host.clone(),
            paths,
            follow_cursor,
            path: String::new(),
            cursor: None,
        });
        writer
    }

    /// The answer that counts as a success.
    fn success(&self) -> u16 {
        if self.reads.is_some() { 200 } else { 201 }
    }

    /// Whether the sender should look for `next_cursor` in the answer.
    fn wants_cursor(&self) -> bool {
        self.reads.as_ref().is_some_and(|r| r.follow_cursor)
    }

    /// The answer's `next_cursor` (None after the last page or on an error).
    fn answered(&mut self, cursor: Option<String>) {
        if let Some(r) = &mut self.reads {
            r.cursor = cursor;
        }
    }

    /// `n` is unique in the run: it picks the recipient and tags the body (a read: the path).
    fn write(&mut self, n: u64, out: &mut Vec<u8>) {
        if let Some(r) = &mut self.reads {
            if r.cursor.is_none() {
                r.path
                    .clone_from(&r.paths[(n % r.paths.len() as u64) as usize]);
            }
            out.clear();
            let _ = write!(out, "GET {}{}", r.prefix, r.path);
            if let Some(c) = &r.cursor {
                let sep = if r.path.contains('?') { '&' } else { '?' };
                let _ = write!(out, "{sep}cursor={c}");
            }
            let _ = write!(out, " HTTP/1.1\r\nHost: {}\r\n\r\n", r.host);
            return;
        }
        let b = &mut self.body;
        b.clear();
        let roll = match self.mix {
            Mix::Sms => 0,
            Mix::Mixed => n % 10,
        };
        // Writing into a Vec cannot fail.
        let _ = match roll {
            0..7 => write!(
                b,
                r#"{{"from":"+15551234567","to":"+1555{:07}","type":"sms","body":"Your verification code is {:06}. Ref {n}""#,
                n % 10_000_000,
                n.wrapping_mul(7919) % 1_000_000
            ),
            7 => write!(
                b,
                r#"{{"from":"+15551234567","to":"+1555{:07}","type":"mms","body":"Here is the photo you asked for (ref {n})","attachments":["https://cdn.example.com/media/{n}.jpg"]"#,
                n % 10_000_000
            ),
            _ => write!(
                b,
                r#"{{"from":"notifications@example.com","to":"user{n}@example.org","type":"email","subject":"Your order {n} has shipped","body":"<p>Hello,</p><p>Your order <b>{n}</b> is on its way.</p>""#
            ),
        };
        if let Some(at) = &self.send_at {
            let _ = write!(b, r#","send_at":"{at}""#);
        }
        b.push(b'}');
        out.clear();
        out.extend_from_slice(&self.head);
        let _ = write!(out, "{}\r\n\r\n", b.len());
        out.extend_from_slice(b);
    }
}

/// What one response said.
struct Response {
    status: u16,
    keep_alive: bool,
    /// The body's `next_cursor`, when asked for and present (bodies with a length only).
    next_cursor: Option<String>,
}

/// Reads one HTTP/1.1 response from `conn`. `buf` keeps bytes read past the response.
async fn read_response(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    want_cursor: bool,
) -> Result<Response, String> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(conn, buf).await?;
    };
    let head = &buf[..head_end];
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("malformed status line")?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = true;
    for line in head.split(|&c| c == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
        if name.eq_ignore_ascii_case(b"content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        let mut at = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[at..], b"\r\n") {
                    break at + i;
                }
                read_more(conn, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[at..line_end]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "malformed chunk size")?;
            let end = line_end + 2 + size + 2;
            while buf.len() < end {
                read_more(conn, buf).await?;
            }
            at = end;
            if size == 0 {
                break;
            }
        }
        buf.drain(..at);
        Ok(Response {
            status,
            keep_alive,
            next_cursor: None,
        })
    } else {
        let end = head_end + length.ok_or("response without Content-Length")?;
        while buf.len() < end {
            read_more(conn, buf).await?;
        }
        let next_cursor = if want_cursor {
            next_cursor(&buf[head_end..end])
        } else {
            None
        };
        buf.drain(..end);
        Ok(Response {
            status,
            keep_alive,
            next_cursor,
        })
    }
}

/// `"next_cursor":"…"` of a list answer (a cursor is URL-safe base64: nothing to unescape).
fn next_cursor(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"next_cursor\":\"";
    let start = find(body, KEY)? + KEY.len();
    let len = body[start..].iter().position(|&c| c == b'"')?;
    String::from_utf8(body[start..start + len].to_vec()).ok()
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(8192);
    let n = conn.read_buf(buf).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed by the server".to_owned());
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What one sender saw.
struct Tally {
    latency: Histogram,
    accepted: u64,
    rejected: BTreeMap<u16, u64>,
    transport_errors: u64,
    last_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new(),
            accepted: 0,
            rejected: BTreeMap::new(),
            transport_errors: 0,
            last_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        self.accepted += other.accepted;
        for (s, n) in other.rejected {
            *self.rejected.entry(s).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }

    fn errors(&self) -> u64 {
        self.rejected.values().sum::<u64>() + self.transport_errors
    }
}

/// How a sender paces itself and when it stops.
#[derive(Clone, Copy)]
struct Plan {
    deadline: Instant,
    /// Open loop: the first scheduled start and the interval between this sender's requests.
    schedule: Option<(Instant, Duration)>,
}

async fn sender(
    target: Arc<Target>,
    mut writer: RequestWriter,
    plan: Plan,
    tickets: Arc<AtomicU64>,
    limit: u64,
    base: u64,
) -> Tally {
    let mut tally = Tally::new();
    let mut conn: Option<TcpStream> = None;
    let mut out = Vec::with_capacity(1024);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut k = 0u32;
    loop {
        let scheduled = match plan.schedule {
            Some((first, every)) => {
                let at = first + every * k;
                k += 1;
                if at >= plan.deadline {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                Some(at)
            }
            None => None,
        };
        if Instant::now() >= plan.deadline {
            break;
        }
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= limit {
            break;
        }
        writer.write(base.wrapping_add(ticket), &mut out);
        let started = scheduled.unwrap_or_else(Instant::now);
        let stream = match &mut conn {
            Some(c) => c,
            None => match TcpStream::connect(target.addr).await {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    buf.clear();
                    conn.insert(c)
                }
                Err(e) => {
                    tally.transport_errors += 1;
                    tally.last_error = Some(format!("connect: {e}"));
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let result = match stream.write_all(&out).await {
            Ok(()) => read_response(stream, &mut buf, writer.wants_cursor()).await,
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(answer) => {
                tally.latency.record(started.elapsed().as_micros() as u64);
                if answer.status == writer.success() {
                    tally.accepted += 1;
                } else {
                    *tally.rejected.entry(answer.status).or_default() += 1;
                }
                writer.answered(answer.next_cursor);
                if !answer.keep_alive {
                    conn = None;
                }
            }
            Err(e) => {
                writer.answered(None);
                tally.transport_errors += 1;
                tally.last_error = Some(e);
                conn = None;
            }
        }
    }
    tally
}

// ---------------------------------------------------------------------------------------
// Database counts

enum Db {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    async fn open(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions =
                url.parse().map_err(|e| format!("database URL: {e}"))?;
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.read_only(true))
                .await
                .map_err(|e| format!("cannot open the SQLite database: {e}"))?;
            Ok(Db::Sqlite(pool))
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(|e| format!("cannot connect to the database: {e}"))?;
            Ok(Db::Pg(pool))
        }
    }

    async fn count(&self, sql: &'static str) -> Result<u64, String> {
        let n: i64 = match self {
            Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .map_err(|e| format!("counting messages: {e}"))?;
        Ok(n.max(0) as u64)
    }

    /// Polls until the backlog is empty; returns when it was, or the backlog left at the timeout.
    async fn wait_empty(&self, timeout: Duration) -> Result<Result<Instant, u64>, String> {
        let from = Instant::now();
        loop {
            if self.count(ANY_BACKLOG_SQL).await? == 0 {
                return Ok(Ok(Instant::now()));
            }
            if from.elapsed() >= timeout {
                return Ok(Err(self.count(BACKLOG_SQL).await?));
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Event receiver

#[derive(Default)]
struct EventTally {
    count: AtomicU64,
    window: std::sync::Mutex<Option<(Instant, Instant)>>,
}

async fn start_receiver(tally: Arc<EventTally>) -> Result<String, String> {
    let app = axum::Router::new().fallback(move || {
        let tally = tally.clone();
        async move {
            let now = Instant::now();
            tally.count.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut w) = tally.window.lock() {
                *w = Some(w.map_or((now, now), |(first, _)| (first, now)));
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the event receiver: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("event receiver address: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/events"))
}

/// Registers `url` as an endpoint subscribed to every event type; returns its id.
async fn register_endpoint(base: &str, url: &str) -> Result<String, String> {
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/webhook-endpoints"))
        .json(&serde_json::json!({ "url": url, "description": "bench receiver" }))
        .send()
        .await
        .map_err(|e| format!("cannot register the event receiver: {e}"))?;
    if resp.status().as_u16() != 201 {
        return Err(format!(
            "registering the event receiver answered {}",
            resp.status()
        ));
    }
    let endpoint: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    endpoint["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the endpoint has no id".to_owned())
}

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_time() -> Option<Duration> {
    process_cpu("self")
}

/// CPU time a process (`self` or a pid) has used (user + system), from /proc/<pid>/stat.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports in clock ticks: 100 per second on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of the whole machine, from the first line of /proc/stat: busy (user, nice,
/// system, irq, softirq, steal) and in all (busy, idle and I/O wait).
fn machine_cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let all = busy + at(3) + at(4);
    Some((
        Duration::from_millis(busy * 10),
        Duration::from_millis(all * 10),
    ))
}

/// Where one request's CPU went during a load: the load client, the API process and the
/// machine as a whole (the rest is the database, the queue and the kernel's work for them).
struct CpuShares {
    serve_pid: Option<u32>,
    client: Option<Duration>,
    api: Option<Duration>,
    machine: Option<(Duration, Duration)>,
}

impl CpuShares {
    fn start(serve_pid: Option<u32>) -> Self {
        Self {
            serve_pid,
            client: cpu_time(),
            api: serve_pid.and_then(|p| process_cpu(&p.to_string())),
            machine: machine_cpu(),
        }
    }

    /// The note's figures since `start`, per request.
    fn note(&self, requests: u64) -> Option<String> {
        if requests == 0 {
            return None;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / requests as f64;
        let since = |before: Option<Duration>, now: Option<Duration>| {
            before.zip(now).map(|(a, b)| b.saturating_sub(a))
        };
        let client = since(self.client, cpu_time())?;
        let mut note = format!("client CPU {:.1} µs/request", per(client));
        let api = since(
            self.api,
            self.serve_pid.and_then(|p| process_cpu(&p.to_string())),
        );
        let Some(api) = api else {
            // No API process on this machine (a load against another deployment): this
            // machine's CPU would not be the service's.
            return Some(note);
        };
        note.push_str(&format!(", API {:.0} µs", per(api)));
        if let Some(((busy0, all0), (busy1, all1))) = self.machine.zip(machine_cpu()) {
            let (busy, all) = (busy1.saturating_sub(busy0), all1.saturating_sub(all0));
            if !all.is_zero() {
                note.push_str(&format!(
                    ", machine {:.0} µs ({:.0}% of the CPUs busy)",
                    per(busy),
                    busy.as_secs_f64() * 100.0 / all.as_secs_f64()
                ));
            }
        }
        Some(note)
    }
}

// ---------------------------------------------------------------------------------------
// Result rows

/// Peak (VmHWM) and current (VmRSS) resident memory of a process, in MiB.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn memory_cell(pids: &[u32]) -> String {
    let cells: Vec<String> = pids
        .iter()
        .map(|&p| match memory(p) {
            Some((peak, now)) => format!("{peak:.0}/{now:.0}"),
            None => "?".to_owned(),
        })
        .collect();
    if cells.is_empty() {
        "-".to_owned()
    } else {
        cells.join(" + ")
    }
}

struct Figures {
    accepted_per_s: Option<f64>,
    latency: Option<(f64, f64, f64)>,
    errors: Option<u64>,
    drain_per_s: Option<f64>,
    note: String,
}

fn record(row: &Row, f: &Figures) -> Result<(), String> {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let line = [
        row.phase.clone(),
        opt(f.accepted_per_s, 0),
        f.latency.map_or("-".to_owned(), |(a, b, c)| {
            format!("{a:.2} / {b:.2} / {c:.2}")
        }),
        f.errors.map_or("-".to_owned(), |e| e.to_string()),
        opt(f.drain_per_s, 0),
        memory_cell(&row.serve_pid.into_iter().collect::<Vec<_>>()),
        memory_cell(&row.worker_pid),
        if f.note.is_empty() {
            "-".to_owned()
        } else {
            f.note.replace('\t', " ")
        },
    ]
    .join("\t");
    println!("[bench] {}", line.replace('\t', " | "));
    if let Some(path) = &row.results {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        writeln!(file, "{line}").map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

fn print_table(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let header = [
        "phase",
        "accepted/s",
        "p50 / p90 / p99 ms",
        "errors",
        "drain/s",
        "serve MiB peak/now",
        "worker MiB peak/now",
        "note",
    ];
    let rows: Vec<Vec<&str>> = std::iter::once(header.to_vec())
        .chain(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.split('\t').collect()),
        )
        .collect();
    let mut widths = vec![0; header.len()];
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for (n, r) in rows.iter().enumerate() {
        let cells: Vec<String> = (0..header.len())
            .map(|i| {
                let c = r.get(i).copied().unwrap_or("");
                let pad = widths[i] - c.chars().count();
                if (1..=6).contains(&i) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        println!("| {} |", cells.join(" | ").trim_end());
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("|-{}-|", rule.join("-|-"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Phases

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a non-negative number of seconds"))
}

async fn load(args: LoadArgs, threads: usize) -> Result<bool, String> {
    let duration = seconds("duration", args.duration)?;
    let drain_timeout = seconds("drain-timeout", args.drain_timeout)?;
    let base = args.url.trim_end_matches('/').to_owned();
    let target = Arc::new(target(&base).await?);
    let db = match &args.database_url {
        Some(url) => Some(Db::open(url).await?),
        None => None,
    };
    if (args.wait_drain || args.events) && db.is_none() {
        return Err("--wait-drain and --events need --database-url".to_owned());
    }
    let sent_before = match &db {
        Some(db) => db.count(SENT_SQL).await?,
        None => 0,
    };
    let events = if args.events {
        let tally = Arc::new(EventTally::default());
        let url = start_receiver(tally.clone()).await?;
        let id = register_endpoint(&base, &url).await?;
        Some((tally, id))
    } else {
        None
    };
    let paths = match &args.paths {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let paths: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if paths.is_empty() {
                return Err(format!("{file}: no paths"));
            }
            Some(Arc::new(paths))
        }
        None => None,
    };
    let send_at = if args.scheduled_ahead {
        Some(
            (time::OffsetDateTime::now_utc() + time::Duration::days(30))
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("formatting send_at: {e}"))?,
        )
    } else {
        None
    };

    let c = args.concurrency;
    let cpu = CpuShares::start(args.row.serve_pid);
    let first = Instant::now();
    let deadline = if args.count.is_some() {
        first + Duration::from_secs(365 * 24 * 3600)
    } else {
        first + duration
    };
    let every = match args.rate {
        Some(r) if r > 0.0 => Some(Duration::from_secs_f64(f64::from(c) / r)),
        Some(_) => return Err("--rate must be positive".to_owned()),
        None => None,
    };
    let tickets = Arc::new(AtomicU64::new(0));
    let limit = args.count.unwrap_or(u64::MAX);
    // A different recipient range each run, so runs do not reuse each other's conversations.
    let base_n = u64::from(fastrand::u32(..)) * 1_000;
    // Like wrk: each load thread runs its own single-threaded event loop over its share of
    // the connections (no work stealing, no cross-thread wake-ups).
    let threads = threads.clamp(1, c as usize) as u32;
    let handles: Vec<std::thread::JoinHandle<Result<Tally, String>>> = (0..threads)
        .map(|t| {
            let (target, tickets, send_at, mix, paths, follow) = (
                target.clone(),
                tickets.clone(),
                send_at.clone(),
                args.mix,
                paths.clone(),
                args.follow_cursor,
            );
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a load thread: {e}"))?;
                runtime.block_on(async move {
                    let tasks: Vec<_> = (t..c)
                        .step_by(threads as usize)
                        .map(|i| {
                            let plan = Plan {
                                deadline,
                                schedule: every.map(|e| (first + e * i / c, e)),
                            };
                            let writer = match &paths {
                                Some(p) => RequestWriter::reading(&target, p.clone(), follow),
                                None => RequestWriter::new(&target, mix, send_at.clone()),
                            };
                            tokio::spawn(sender(
                                target.clone(),
                                writer,
                                plan,
                                tickets.clone(),
                                limit,
                                base_n,
                            ))
                        })
                        .collect();
                    let mut tally = Tally::new();
                    for task in tasks {
                        tally.merge(task.await.map_err(|e| format!("a sender failed: {e}"))?);
                    }
                    Ok(tally)
                })
            })
        })
        .collect();
    let tallies = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "a load thread panicked".to_owned())?)
            .collect::<Result<Vec<Tally>, String>>()
    })
    .await
    .map_err(|e| format!("joining the load threads: {e}"))??;
    let mut tally = Tally::new();
    for t in tallies {
        tally.merge(t);
    }
    let send_end = Instant::now();
    let secs = send_end.duration_since(first).as_secs_f64();
    let requests = tally.accepted + tally.errors();
    let cpu_note = cpu.note(requests);

    let mut note = Vec::new();
    if let Some(r) = args.rate {
        note.push(format!("offered {r:.0}/s"));
    }
    if !tally.rejected.is_empty() || tally.transport_errors > 0 {
        let mut parts: Vec<String> = tally
            .rejected
            .iter()
            .map(|(s, n)| format!("HTTP {s}: {n}"))
            .collect();
        if tally.transport_errors > 0 {
            parts.push(format!("no answer: {}", tally.transport_errors));
        }
        note.push(parts.join(", "));
        if let Some(e) = &tally.last_error {
            eprintln!("[bench] {}: last error: {e}", args.row.phase);
        }
    }
    if paths.is_some() {
        note.push(format!("{} answered 200", tally.accepted));
    } else {
        note.push(format!("{} accepted", tally.accepted));
    }
    note.extend(cpu_note);

    let mut drain_per_s = None;
    let mut ok = tally.accepted > 0;
    if let (true, Some(db)) = (args.wait_drain || args.events, &db) {
        match db.wait_empty(drain_timeout).await? {
            Ok(at) => {
                drain_per_s = Some(tally.accepted as f64 / at.duration_since(first).as_secs_f64());
                note.push(format!(
                    "empty {:.2} s after the load",
                    at.duration_since(send_end).as_secs_f64()
                ));
            }
            Err(left) => {
                note.push(format!(
                    "{left} still waiting after {:.0} s",
                    args.drain_timeout
                ));
                ok = false;
            }
        }
    }
    if let (Some((events, id)), Some(db)) = (&events, &db) {
        // One `message.sent` per message sent.
        let expected = db.count(SENT_SQL).await?.saturating_sub(sent_before);
        let from = Instant::now();
        while events.count.load(Ordering::Relaxed) < expected && from.elapsed() < drain_timeout {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let got = events.count.load(Ordering::Relaxed);
        let window = events.window.lock().ok().and_then(|w| *w);
        let rate = window.map_or(0.0, |(a, b)| {
            got as f64 / b.duration_since(a).as_secs_f64().max(0.001)
        });
        note.push(format!("events {rate:.0}/s ({got} of {expected})"));
        let _ = reqwest::Client::new()
            .delete(format!("{base}/api/v1/webhook-endpoints/{id}"))
            .send()
            .await;
    }
    let h = &tally.latency;
    let ms = |p| h.percentile(p) as f64 / 1000.0;
    record(
        &args.row,
        &Figures {
            accepted_per_s: Some(tally.accepted as f64 / secs),
            latency: Some((ms(50.0), ms(90.0), ms(99.0))),
            errors: Some(tally.errors()),
            drain_per_s,
            note: note.join("; "),
        },
    )?;
    Ok(ok)
}

async fn drain(args: DrainArgs) -> Result<bool, String> {
    let db = Db::open(&args.database_url).await?;
    let timeout = seconds("drain-timeout", args.drain_timeout)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    // The workers started `since_ms`: count from then, on this process's clock.
    let since = Instant::now() - Duration::from_millis(now_ms.saturating_sub(args.since_ms));
    let (drain_per_s, note, ok) = match db.wait_empty(timeout).await? {
        Ok(at) => {
            let secs = at.duration_since(since).as_secs_f64();
            (
                Some(args.initial as f64 / secs),
                format!("{} in {secs:.2} s", args.initial),
                true,
            )
        }
        Err(left) => (
            None,
            format!("{left} of {} still waiting", args.initial),
            false,
        ),
    };
    record(
        &args.row,
        &Figures {
            accepted_per_s: None,
            latency: None,
            errors: None,
            drain_per_s,
            note,
        },
    )?;
    Ok(ok)
}

/// The conversations of `seed`: $1 conversations for $2 messages, message i in conversation
/// i % $1, message i stored at $3 + i * $4 (Unix seconds).
const SEED_CONVERSATIONS_SQL: &str = "
insert into conversations (id, channel, participant_a, participant_b, status, message_count,
                           unread_count, last_message_at, created_at, updated_at)
select md5('bench-c' || c)::uuid, 'phone', '+15551234567', '+1666' || lpad(c::text, 7, '0'),
       case when c % 10 = 9 then 'archived' else 'active' end,
       ($2 - 1 - c) / $1 + 1, 0,
       to_timestamp($3 + (c + $1 * (($2 - 1 - c) / $1)) * $4),
       to_timestamp($3 + c * $4),
       to_timestamp($3 + (c + $1 * (($2 - 1 - c) / $1)) * $4)
from generate_series(0, $1 - 1) c";

/// Messages $1 to $2 - 1 of `seed` ($3 conversations, times as above): one in five inbound
/// (received and read), the rest outbound: delivered, one in ten sent, one in fifty failed.
/// Each with its search document, as the send path stores it.
const SEED_MESSAGES_SQL: &str = "
with stored as (
insert into messages (id, conversation_id, direction, type, from_address, to_address, body,
                      status, provider, provider_message_id, num_segments, error_code,
                      created_at, updated_at, sent_at, delivered_at, failed_at, read_at)
select md5('bench-m' || i)::uuid, md5('bench-c' || (i % $3))::uuid,
       case when inbound then 'inbound' else 'outbound' end, 'sms',
       case when inbound then peer else '+15551234567' end,
       case when inbound then '+15551234567' else peer end,
       'Your verification code is ' || lpad(((i * 7919) % 1000000)::text, 6, '0') || '. Ref ' || i,
       status, 'mock', 'bench-' || i, 1,
       case when status = 'failed' then 'bench_failure' end,
       t, t,
       case when status in ('sent', 'delivered') then t end,
       case when status = 'delivered' then t end,
       case when status = 'failed' then t end,
       case when inbound then t end
from (select i, inbound, t, '+1666' || lpad((i % $3)::text, 7, '0') as peer,
             case when inbound then 'received' when i % 50 = 1 then 'failed'
                  when i % 10 = 3 then 'sent' else 'delivered' end as status
      from (select i, i % 5 = 4 as inbound, to_timestamp($4 + i * $5) as t
            from generate_series($1, $2 - 1) i) g) s
returning id, conversation_id, subject, body)
insert into message_texts (message_id, conversation_id, document)
select id, conversation_id,
       to_tsvector('simple', left(coalesce(subject, '') || ' ' || coalesce(body, ''), 65536))
from stored";

/// Stores messages and their conversations straight into PostgreSQL, spread evenly over the
/// 30 days before now, oldest first, so that list reads can be measured on a table of a
/// size the API would take hours to fill.
async fn seed(args: SeedArgs) -> Result<bool, String> {
    if !args.database_url.starts_with("postgres") {
        return Err("seed: PostgreSQL only".to_owned());
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    let n = i64::try_from(args.messages).map_err(|_| "--messages is too large")?;
    if n == 0 {
        return Ok(true);
    }
    let per =
        i64::try_from(args.per_conversation).map_err(|_| "--per-conversation is too large")?;
    let conversations = (n + per - 1) / per;
    let period = 30.0 * 86_400.0;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    let (start, step) = (now - period, period / n as f64);
    let began = Instant::now();
    sqlx::query(SEED_CONVERSATIONS_SQL)
        .bind(conversations)
        .bind(n)
        .bind(start)
        .bind(step)
        .execute(&pool)
        .await
        .map_err(|e| format!("storing conversations: {e}"))?;
    const CHUNK: i64 = 250_000;
    let mut lo = 0;
    while lo < n {
        let hi = (lo + CHUNK).min(n);
        sqlx::query(SEED_MESSAGES_SQL)
            .bind(lo)
            .bind(hi)
            .bind(conversations)
            .bind(start)
            .bind(step)
            .execute(&pool)
            .await
            .map_err(|e| format!("storing messages {lo}..{hi}: {e}"))?;
        lo = hi;
        let secs = began.elapsed().as_secs_f64();
        eprintln!(
            "[bench] seed: {hi} of {n} messages, {:.0}/s",
            hi as f64 / secs
        );
    }
    println!(
        "{n} messages in {conversations} conversations stored in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    Ok(true)
}

async fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Load(args) => load(args, cli.threads).await,
        Command::Drain(args) => drain(args).await,
        Command::Seed(args) => seed(args).await,
        Command::Backlog { database_url } => {
            println!(
                "{}",
                Db::open(&database_url).await?.count(BACKLOG_SQL).await?
            );
            Ok(true)
        }
        Command::Table { results } => print_table(&results).map(|()| true),
    }
}

fn main() -> ExitCode {
    // The event receiver's registration uses reqwest, built without a bundled crypto provider.
    messaging_service::provider::install_crypto_provider();
    let cli = Cli::parse();
    // The load itself runs on its own threads (see `load`); this runtime polls the database
    // and serves the event receiver.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        for v in 0..256 {
            assert_eq!(Histogram::bounds(Histogram::index(v)), (v, v));
        }
    }

    #[test]
    fn buckets_are_narrower_than_one_percent() {
        for v in [
            256u64,
            999,
            1_000,
            12_345,
            987_654,
            30_000_000,
            u64::MAX / 3,
        ] {
            let (low, high) = Histogram::bounds(Histogram::index(v));
            assert!(low <= v && v <= high, "{v} outside {low}..={high}");
            assert!(
                ((high - low) as f64) < v as f64 * 0.01,
                "{v}: {low}..={high}"
            );
        }
    }

    #[test]
    fn percentiles_follow_the_nearest_rank() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(90.0), 90);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        let mut other = Histogram::new();
        other.record(10_000);
        h.merge(&other);
        assert_eq!(h.total, 101);
        let top = h.percentile(100.0);
        assert!((9_950..=10_000).contains(&top), "{top}");
    }

    #[test]
    fn requests_carry_distinct_recipients_and_an_exact_length() {
        let t = Target {
            addr: "127.0.0.1:1".parse().expect("address"),
            host: "127.0.0.1:1".to_owned(),
            path_prefix: String::new(),
        };
        let mut w = RequestWriter::new(&t, Mix::Sms, None);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        w.write(1, &mut a);
        w.write(2, &mut b);
        let text = String::from_utf8(a).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).expect("json body");
        let other: serde_json::Value = serde_json::from_str(
            String::from_utf8(b)
                .expect("utf-8")
                .split_once("\r\n\r\n")
                .expect("body")
                .1,
        )
        .expect("json body");
        assert_ne!(json["to"], other["to"]);
        assert_eq!(json["type"], "sms");
    }

    #[test]
    fn reads_follow_the_cursor_then_start_over() {
        let t = Target {
            addr: "127.0.0.1:1".parse().expect("address"),
            host: "h:1".to_owned(),
            path_prefix: String::new(),
        };
        let paths = Arc::new(vec!["/a?limit=2".to_owned(), "/b".to_owned()]);
        let mut w = RequestWriter::reading(&t, paths, true);
        assert_eq!(w.success(), 200);
        let mut out = Vec::new();
        w.write(0, &mut out);
        assert_eq!(out, b"GET /a?limit=2 HTTP/1.1\r\nHost: h:1\r\n\r\n");
        let body = br#"{"messages":[],"next_cursor":"MS5hYmM","total":3}"#;
        w.answered(next_cursor(body));
        w.write(1, &mut out);
        assert_eq!(
            out,
            b"GET /a?limit=2&cursor=MS5hYmM HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
        // The last page: `next_cursor` is null, so the next request starts on a path.
        w.answered(next_cursor(br#"{"next_cursor":null}"#));
        w.write(1, &mut out);
        assert_eq!(out, b"GET /b HTTP/1.1\r\nHost: h:1\r\n\r\n");
    }
}
