//! Load generator for the messaging API.
//!
//! Concurrent clients post distinct messages to `POST /api/v1/messages/send` for a fixed
//! time, recording the latency and status of every request. Then the backlog (messages
//! `pending`, `sending` or `retry`) is watched until it drains, which gives the end-to-end
//! delivery rate: accepted messages over the time from the first send to an empty backlog.
//!
//! ```text
//! cargo run --release --example bench -- --url http://localhost:8080 --concurrency 64 --duration 10
//! ```
//!
//! `--scheduled N` first stores N messages scheduled 30 days ahead (through the same
//! endpoint, with `send_at`), so that a run with it and one without show whether a large
//! schedule slows the send path or the worker.
//!
//! `scripts/bench.sh` starts a scratch API and worker and runs this against them.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

/// Statuses whose messages are still waiting to be delivered.
const BACKLOG_STATUSES: [&str; 3] = ["pending", "sending", "retry"];
const DRAIN_POLL: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Load-test the messaging API and measure end-to-end delivery",
    args_override_self = true
)]
struct Args {
    /// Base URL of the API
    #[arg(long, default_value = "http://localhost:8080")]
    url: String,
    /// Concurrent senders
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Length of the send phase, in seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Message mix: `sms` only, or `mixed` (70% sms, 10% mms, 20% email)
    #[arg(long, value_enum, default_value_t = Mix::Sms)]
    mix: Mix,
    /// Longest wait for the backlog to drain after the send phase, in seconds
    #[arg(long, default_value_t = 120.0)]
    drain_timeout: f64,
    /// Before the run, store this many messages scheduled 30 days ahead
    #[arg(long, default_value_t = 0)]
    scheduled: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mix {
    Sms,
    Mixed,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Sms => "sms",
            Mix::Mixed => "mixed (70% sms, 10% mms, 20% email)",
        }
    }
}

/// What one sender saw.
#[derive(Default)]
struct Tally {
    /// Latency of every request that got an HTTP answer, in microseconds.
    latencies_us: Vec<u64>,
    accepted: u64,
    /// Non-201 answers by status code.
    rejected: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection error, timeout).
    transport_errors: u64,
    last_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.accepted += other.accepted;
        for (status, n) in other.rejected {
            *self.rejected.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }

    fn requests(&self) -> u64 {
        self.accepted + self.rejected.values().sum::<u64>() + self.transport_errors
    }

    fn errors(&self) -> u64 {
        self.requests() - self.accepted
    }
}

fn random_phone() -> String {
    format!("+1555{:07}", fastrand::u32(0..10_000_000))
}

/// A realistic, distinct send request; `seq` makes the body unique.
fn payload(mix: Mix, sender: u32, seq: u64) -> Value {
    let roll = match mix {
        Mix::Sms => 0,
        Mix::Mixed => fastrand::u8(0..100),
    };
    let tag = format!("{sender}-{seq}");
    match roll {
        0..70 => json!({
            "from": "+15551234567",
            "to": random_phone(),
            "type": "sms",
            "body": format!("Your verification code is {:06}. Ref {tag}", fastrand::u32(0..1_000_000)),
        }),
        70..80 => json!({
            "from": "+15551234567",
            "to": random_phone(),
            "type": "mms",
            "body": format!("Here is the photo you asked for (ref {tag})"),
            "attachments": [format!("https://cdn.example.com/media/{}.jpg", uuid::Uuid::new_v4())],
        }),
        _ => json!({
            "from": "notifications@example.com",
            "to": format!("user{}@example.org", fastrand::u32(0..1_000_000)),
            "type": "email",
            "subject": format!("Your order {tag} has shipped"),
            "body": format!("<p>Hello,</p><p>Your order <b>{tag}</b> is on its way.</p>"),
        }),
    }
}

async fn sender(
    client: reqwest::Client,
    send_url: String,
    mix: Mix,
    id: u32,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut seq = 0u64;
    while Instant::now() < deadline {
        seq += 1;
        let body = payload(mix, id, seq);
        let started = Instant::now();
        let result = client.post(&send_url).json(&body).send().await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the body so the connection goes back to the pool.
                let read = response.bytes().await;
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                match read {
                    Ok(_) if status == 201 => tally.accepted += 1,
                    Ok(_) => *tally.rejected.entry(status).or_default() += 1,
                    Err(e) => {
                        tally.transport_errors += 1;
                        tally.last_error = Some(e.to_string());
                    }
                }
            }
            Err(e) => {
                tally.transport_errors += 1;
                tally.last_error = Some(e.to_string());
            }
        }
    }
    tally
}

/// Stores `n` sms scheduled 30 days ahead, `concurrency` requests at a time; returns how
/// many were accepted.
async fn preload_scheduled(
    client: &reqwest::Client,
    send_url: &str,
    n: u64,
    concurrency: u32,
) -> Result<u64, String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let send_at = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("formatting send_at: {e}"))?;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, send_at) = (
                client.clone(),
                send_url.to_owned(),
                next.clone(),
                send_at.clone(),
            );
            tokio::spawn(async move {
                let mut accepted = 0u64;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let mut body = payload(Mix::Sms, 0, 0);
                    body["send_at"] = Value::from(send_at.as_str());
                    if let Ok(r) = client.post(&url).json(&body).send().await
                        && r.status().as_u16() == 201
                    {
                        accepted += 1;
                    }
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += task
            .await
            .map_err(|e| format!("a preload task failed: {e}"))?;
    }
    Ok(accepted)
}

/// `total` of the message list filtered by one status.
async fn count(client: &reqwest::Client, base: &str, status: &str) -> Result<u64, String> {
    let url = format!("{base}/api/v1/messages?status={status}&limit=1");
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let code = response.status();
    if !code.is_success() {
        return Err(format!("GET {url}: HTTP {code}"));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    body["total"]
        .as_u64()
        .ok_or_else(|| format!("GET {url}: no numeric \"total\" in the answer"))
}

async fn backlog(client: &reqwest::Client, base: &str) -> Result<u64, String> {
    let mut total = 0;
    for status in BACKLOG_STATUSES {
        total += count(client, base, status).await?;
    }
    Ok(total)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a non-negative number of seconds"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // The HTTP client is built without a bundled crypto provider; use the service's (ring).
    messaging_service::provider::install_crypto_provider();
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let duration = seconds("duration", args.duration)?;
    let drain_timeout = seconds("drain-timeout", args.drain_timeout)?;
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize + 4)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;

    let sent_before = count(&client, &base, "sent").await?;
    let failed_before = count(&client, &base, "failed").await?;
    let backlog_before = backlog(&client, &base).await?;

    println!("== messaging-service benchmark ==");
    println!("target           {base}");
    println!("concurrency      {}", args.concurrency);
    println!("duration         {:.1} s", duration.as_secs_f64());
    println!("mix              {}", args.mix.label());
    if backlog_before > 0 {
        println!("note             {backlog_before} messages were already waiting before the run");
    }
    // Send phase.
    let send_url = format!("{base}/api/v1/messages/send");
    if args.scheduled > 0 {
        let started = Instant::now();
        let stored =
            preload_scheduled(&client, &send_url, args.scheduled, args.concurrency).await?;
        let waiting = count(&client, &base, "scheduled").await?;
        println!(
            "scheduled        {stored} stored 30 days ahead in {:.1} s ({waiting} waiting in all)",
            started.elapsed().as_secs_f64()
        );
    }
    println!();
    let first_send = Instant::now();
    let deadline = first_send + duration;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|id| {
            tokio::spawn(sender(
                client.clone(),
                send_url.clone(),
                args.mix,
                id,
                deadline,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => tally.merge(t),
            Err(e) => return Err(format!("a sender task failed: {e}")),
        }
    }
    let send_elapsed = first_send.elapsed();

    // Drain phase: poll until nothing is pending, sending or retrying.
    let send_end = Instant::now();
    let mut drained_at = None;
    let mut remaining = None;
    let mut poll_errors = 0u64;
    let mut last_poll_error = None;
    loop {
        match backlog(&client, &base).await {
            Ok(0) => {
                drained_at = Some(Instant::now());
                break;
            }
            Ok(n) => remaining = Some(n),
            Err(e) => {
                poll_errors += 1;
                last_poll_error = Some(e);
            }
        }
        if send_end.elapsed() >= drain_timeout {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let sent_delta = count(&client, &base, "sent")
        .await
        .map(|n| n.saturating_sub(sent_before));
    let failed_delta = count(&client, &base, "failed")
        .await
        .map(|n| n.saturating_sub(failed_before));

    // Report.
    let mut latencies = std::mem::take(&mut tally.latencies_us);
    latencies.sort_unstable();
    let send_secs = send_elapsed.as_secs_f64();
    println!("-- send phase --");
    println!(
        "requests         {} ({:.1} req/s)",
        tally.requests(),
        tally.requests() as f64 / send_secs
    );
    println!("accepted (201)   {}", tally.accepted);
    let mut breakdown: Vec<String> = tally
        .rejected
        .iter()
        .map(|(status, n)| format!("HTTP {status}: {n}"))
        .collect();
    if tally.transport_errors > 0 {
        breakdown.push(format!("no answer: {}", tally.transport_errors));
    }
    if breakdown.is_empty() {
        println!("errors           0");
    } else {
        println!(
            "errors           {} ({})",
            tally.errors(),
            breakdown.join(", ")
        );
    }
    if let Some(e) = &tally.last_error {
        println!("last error       {e}");
    }
    println!(
        "accepted rate    {:.1} msgs/s over {send_secs:.2} s",
        tally.accepted as f64 / send_secs
    );
    println!(
        "latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or(0)),
    );
    println!();
    println!("-- delivery --");
    let drained = match drained_at {
        Some(at) => {
            let total = at.duration_since(first_send).as_secs_f64();
            println!(
                "drain time       {:.2} s after the send phase",
                at.duration_since(send_end).as_secs_f64()
            );
            println!(
                "end-to-end       {:.1} msgs/s ({} accepted in {total:.2} s from first send to empty backlog)",
                tally.accepted as f64 / total,
                tally.accepted
            );
            true
        }
        None => {
            println!(
                "drain time       did not drain within {:.0} s ({} still waiting)",
                drain_timeout.as_secs_f64(),
                remaining.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
            );
            false
        }
    };
    match sent_delta {
        Ok(n) => println!("newly sent       {n} of {} accepted", tally.accepted),
        Err(e) => println!("newly sent       unknown ({e})"),
    }
    match failed_delta {
        Ok(n) => println!("newly failed     {n}"),
        Err(e) => println!("newly failed     unknown ({e})"),
    }
    if poll_errors > 0 {
        println!(
            "poll errors      {poll_errors} (last: {})",
            last_poll_error.unwrap_or_default()
        );
    }

    Ok(if drained && tally.accepted > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
