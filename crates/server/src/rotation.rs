//! `twofold key status | rotate | retire`: the operator's side of master key rotation (the
//! procedure and why it runs in this order: `twofold_core::keys`; the nodes' side:
//! [`crate::keywatch`]).
//!
//! `rotate` never makes a key active that a live node lacks, and `retire` never removes a key
//! that is active, awaited, used by a live node or still named by a stored blob: both read
//! the nodes' reports and the store, and change the cluster's key state only by conditional
//! writes, so two operators cannot interleave. Every step can be repeated: `key rotate --key
//! ID` resumes a rotation wherever it stopped.
//!
//! The hashing key is not touched here (see [`crate::keys`] for why it never rotates).

use crate::app::open_store;
use crate::cli::CliError;
use crate::config::Config;
use crate::keys::{self, KeySource, MasterKeys};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twofold_core::keys::{lagging, KeyChange, KeyState, NodeKeys, SealedColumn};
use twofold_core::model::AuditRecord;
use twofold_core::ports::{Clock, Store, SystemClock};
use twofold_core::service::keys::{sweep_sealed, SealedCensus, SweepProgress};

/// Re-sealing passes at most: the first does the work, the next ones pick up values that
/// changed under it (normally none) and confirm nothing is left.
const MAX_PASSES: usize = 3;
/// How often the nodes' reports are read while waiting.
const POLL: Duration = Duration::from_millis(200);

/// `twofold key rotate` options.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// An existing key to rotate to (already in this keyring); `None` makes a new one.
    pub key: Option<String>,
    /// How long to wait for the nodes at each step.
    pub wait: Duration,
    /// Nodes not seen for this long are not waited for.
    pub stale_after: Duration,
    /// Rows re-sealed per transaction.
    pub batch: u32,
}

impl RotateOptions {
    /// [`wait_for_nodes`] with these options' wait and staleness.
    async fn wait_for_nodes(
        &self,
        store: &dyn Store,
        what: &str,
        ok: impl Fn(&NodeKeys) -> bool,
    ) -> Result<Result<usize, Vec<NodeKeys>>, CliError> {
        wait_for_nodes(store, what, ok, self.wait, self.stale_after).await
    }
}

fn usage(message: String) -> CliError {
    CliError::Usage(message)
}

/// The store, this process's keys and the cluster's key state.
struct Ctx {
    config: Config,
    store: Arc<dyn Store>,
    keys: MasterKeys,
    state: KeyState,
}

impl Ctx {
    async fn open(config: &Config) -> Result<Self, CliError> {
        let store = open_store(config).await?;
        let keys = keys::master_keys(config, false)?;
        let state = store.key_state().await?;
        Ok(Self {
            config: config.clone(),
            store,
            keys,
            state,
        })
    }

    /// The key the cluster seals under: the database's choice, else the primary key every
    /// node shares.
    fn active(&self) -> Result<String, CliError> {
        match (&self.state.active, self.keys.primary()) {
            (Some(id), _) => Ok(id.clone()),
            (None, Some(primary)) => Ok(primary.to_string()),
            (None, None) => Err(usage(
                "the database names no active master key and this keyring has no primary key \
                 (master_key or master.key): run this where the nodes' master.key is"
                    .into(),
            )),
        }
    }

    fn keys_dir(&self) -> std::path::PathBuf {
        keys::keys_dir(&self.config)
    }

    /// Moves the cluster's key state from the one read last, audited as `action`.
    async fn set_state(
        &mut self,
        active: Option<String>,
        pending: Option<String>,
        action: &str,
        reason: String,
    ) -> Result<(), CliError> {
        let now = SystemClock.now_ms();
        let change = KeyChange {
            expected_version: self.state.version,
            active,
            pending,
            at: now,
        };
        let changed = self
            .store
            .set_key_state(change, audit(action, reason, now))
            .await?;
        self.state = self.store.key_state().await?;
        if changed {
            Ok(())
        } else {
            Err(usage(
                "another `twofold key` command changed the key state meanwhile; see `twofold \
                 key status`, then run this again"
                    .into(),
            ))
        }
    }

    /// Every node with a report kept, and the time to compare their reports with.
    async fn nodes(&self) -> Result<(Vec<NodeKeys>, i64), CliError> {
        let now = SystemClock.now_ms();
        let nodes = self
            .store
            .node_keys(now - crate::keywatch::FORGET_NODES_AFTER_MS)
            .await?;
        Ok((nodes, now))
    }
}

fn audit(action: &str, reason: String, at: i64) -> AuditRecord {
    AuditRecord {
        tenant_id: None,
        at,
        actor: "cli".into(),
        action: action.into(),
        user_id: None,
        factor_id: None,
        outcome: "ok".into(),
        reason: Some(reason),
        ip: None,
        request_id: None,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One node for messages: its id, when it last reported, its keys.
fn describe(n: &NodeKeys, now: i64) -> String {
    format!(
        "{} (seen {:.1}s ago, holds {}, seals under {})",
        n.node_id,
        (now - n.seen_at).max(0) as f64 / 1000.0,
        n.key_ids.join(", "),
        n.sealing_key_id
    )
}

/// Waits until every live node passes `ok`, saying on stderr whom it waits for whenever that
/// changes (and every few seconds). At the deadline, the nodes still lagging.
async fn wait_for_nodes(
    store: &dyn Store,
    what: &str,
    ok: impl Fn(&NodeKeys) -> bool,
    wait: Duration,
    stale_after: Duration,
) -> Result<Result<usize, Vec<NodeKeys>>, CliError> {
    let deadline = Instant::now() + wait;
    let mut shown: Option<(Vec<String>, Instant)> = None;
    loop {
        let now = SystemClock.now_ms();
        let since = now - millis(stale_after);
        let nodes = store.node_keys(since).await?;
        let behind: Vec<NodeKeys> = lagging(&nodes, since, &ok).into_iter().cloned().collect();
        if behind.is_empty() {
            eprintln!("all {} live node(s) {what}", nodes.len());
            return Ok(Ok(nodes.len()));
        }
        if Instant::now() >= deadline {
            return Ok(Err(behind));
        }
        let ids: Vec<String> = behind.iter().map(|n| n.node_id.clone()).collect();
        let due = match &shown {
            None => true,
            Some((before, at)) => *before != ids || at.elapsed() >= Duration::from_secs(5),
        };
        if due {
            eprintln!(
                "waiting for {} of {} live node(s) to {what}: {}",
                behind.len(),
                nodes.len(),
                behind
                    .iter()
                    .map(|n| describe(n, now))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            shown = Some((ids, Instant::now()));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn list(nodes: &[NodeKeys]) -> String {
    let now = SystemClock.now_ms();
    nodes
        .iter()
        .map(|n| describe(n, now))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `twofold key rotate`.
pub async fn rotate(config: &Config, opts: RotateOptions) -> Result<(), CliError> {
    let mut cx = Ctx::open(config).await?;
    let current = cx.active()?;
    if let (Some(p), Some(k)) = (&cx.state.pending, &opts.key) {
        if p != k {
            return Err(usage(format!(
                "a rotation to key {p} is under way: finish it first with `twofold key rotate \
                 --key {p}`"
            )));
        }
    }
    let target = match (&opts.key, &cx.state.pending) {
        (Some(id), _) => {
            if !cx.keys.holds(id) {
                return Err(usage(format!(
                    "this keyring has no key {id}: copy {id}.key into {} (mode 0600) or add it \
                     to master_keys, or run the command where the key is",
                    cx.keys_dir().display()
                )));
            }
            id.clone()
        }
        (None, Some(p)) => {
            return Err(usage(format!(
                "a rotation to key {p} is under way: finish it with `twofold key rotate --key \
                 {p}`"
            )))
        }
        (None, None) => {
            let (key, path) = keys::write_new_key(config)?;
            let id = key.id();
            println!(
                "new master key {id} written to {} (mode 0600)",
                path.display()
            );
            cx.keys.add(key, KeySource::File(path));
            id
        }
    };
    let file = match cx.keys.source_of(&target) {
        Some(KeySource::File(p)) => p.display().to_string(),
        _ => format!("{target}.key"),
    };

    if target != current {
        // Step 1: every live node must hold the new key before anything is sealed under it.
        println!("rotating the master key from {current} to {target}");
        if cx.state.pending.as_deref() != Some(target.as_str()) {
            let active = cx.state.active.clone();
            cx.set_state(
                active,
                Some(target.clone()),
                "key.rotate_begin",
                format!("{current} -> {target}"),
            )
            .await?;
        }
        eprintln!(
            "every node must hold key {target}: copy {file} into each node's <data_dir>/keys/ \
             (mode 0600), or add the key to their master_keys and restart them. Nodes re-read \
             their key files every key_heartbeat_ms while a rotation waits, and at once on \
             SIGHUP. Waiting up to {}s.",
            opts.wait.as_secs()
        );
        let holds = |n: &NodeKeys| n.key_ids.contains(&target);
        let waited = opts
            .wait_for_nodes(&*cx.store, &format!("hold key {target}"), holds)
            .await?;
        if let Err(behind) = waited {
            // Back to where it was: nodes stop re-reading their key files.
            let active = cx.state.active.clone();
            let undone = cx
                .set_state(
                    active,
                    None,
                    "key.rotate_abandon",
                    format!("{current} -> {target}: nodes lack the key"),
                )
                .await;
            if let Err(e) = undone {
                eprintln!("could not withdraw the pending rotation: {e}");
            }
            return Err(usage(format!(
                "gave up after {}s: {} node(s) do not hold key {target}: {}. Copy {file} into \
                 each one's <data_dir>/keys/ (mode 0600) or add it to their master_keys, send \
                 them SIGHUP (or restart them), then run `twofold key rotate --key {target}` \
                 again. Nothing changed: secrets are still sealed under {current}.",
                opts.wait.as_secs(),
                behind.len(),
                list(&behind)
            )));
        }
        // Step 2: the switch. From here on every node seals under the new key.
        cx.set_state(
            Some(target.clone()),
            None,
            "key.rotate",
            format!("{current} -> {target}"),
        )
        .await?;
        println!("key {target} is now the active master key (was {current})");
    } else if cx.state.pending.is_some() {
        cx.set_state(
            Some(target.clone()),
            None,
            "key.rotate",
            format!("{target} stays active"),
        )
        .await?;
    } else {
        println!("key {target} is already the active master key: re-sealing what is left");
    }

    // Step 3: wait until no live node seals under an older key, so the pass below is not
    // followed by new blobs under it.
    let sealing = |n: &NodeKeys| n.sealing_key_id == target;
    let waited = opts
        .wait_for_nodes(&*cx.store, &format!("seal under key {target}"), sealing)
        .await?;
    if let Err(behind) = waited {
        return Err(usage(format!(
            "key {target} is active, but after {}s {} node(s) still seal under another key: \
             {}. A node follows within key_heartbeat_ms unless it is stuck: restart it, then \
             run `twofold key rotate --key {target}` to re-seal the rest.",
            opts.wait.as_secs(),
            behind.len(),
            list(&behind)
        )));
    }

    // Step 4: re-seal everything under the new key.
    let ring = cx.keys.keyring(Some(&target), &cx.keys_dir())?;
    let mut census = SealedCensus::default();
    for pass in 1..=MAX_PASSES {
        let mut shown = ShownProgress::default();
        census = sweep_sealed(&*cx.store, Some(&ring), opts.batch, &mut |p| {
            shown.show(pass, p)
        })
        .await?;
        if !census.moved() {
            break;
        }
    }
    report(&cx, &census, &target)
}

/// Progress of a sweep on stderr: at most once a second per column, and at its end.
#[derive(Default)]
struct ShownProgress {
    last: Option<Instant>,
}

impl ShownProgress {
    fn show(&mut self, pass: usize, p: SweepProgress) {
        let due = match self.last {
            None => true,
            Some(t) => t.elapsed() >= Duration::from_secs(1),
        };
        if p.done || due {
            eprintln!(
                "re-sealing (pass {pass}) {}: {} rows read, {} re-sealed{}",
                p.column.as_str(),
                p.rows,
                p.resealed,
                if p.done { ", done" } else { "" }
            );
            self.last = if p.done { None } else { Some(Instant::now()) };
        }
    }
}

/// Step 5: which key ids still name blobs, and what to do next.
fn report(cx: &Ctx, census: &SealedCensus, target: &str) -> Result<(), CliError> {
    let by_key = census.by_key();
    println!("sealed values by master key:");
    let mut ids: Vec<String> = cx.keys.sources().map(|(id, _)| id).collect();
    ids.extend(by_key.keys().cloned());
    ids.sort();
    ids.dedup();
    for id in &ids {
        let mark = if id == target { "  (active)" } else { "" };
        println!("  {id}  {}{mark}", by_key.get(id).copied().unwrap_or(0));
    }
    for id in ids.iter().filter(|id| *id != target) {
        let (n, columns) = census.under(id);
        if n == 0 {
            println!("nothing is sealed under {id}: retire it with `twofold key retire {id}`");
        } else {
            println!(
                "{n} value(s) still sealed under {id} ({}): run `twofold key rotate --key \
                 {target}` again",
                columns_text(&columns)
            );
        }
    }
    if census.unreadable.is_empty() {
        return Ok(());
    }
    for (column, key, why) in census.unreadable.iter().take(20) {
        eprintln!("cannot re-seal {} of {key}: {why}", column.as_str());
    }
    Err(usage(format!(
        "{} sealed value(s) could not be re-sealed (listed above): a key this keyring lacks \
         (add it and run `twofold key rotate --key {target}` again), or damaged rows",
        census.unreadable.len()
    )))
}

fn columns_text(columns: &[(SealedColumn, u64)]) -> String {
    columns
        .iter()
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `twofold key retire ID`.
pub async fn retire(
    config: &Config,
    id: &str,
    stale_after: Duration,
    batch: u32,
) -> Result<(), CliError> {
    let cx = Ctx::open(config).await?;
    let active = cx.active()?;
    if id == active {
        return Err(usage(format!(
            "key {id} is the active master key: rotate to a new key first (`twofold key \
             rotate`), then retire {id}"
        )));
    }
    if cx.state.pending.as_deref() == Some(id) {
        return Err(usage(format!(
            "a rotation to key {id} is under way: finish it (`twofold key rotate --key {id}`) \
             or let it give up first"
        )));
    }
    let (nodes, now) = cx.nodes().await?;
    let since = now - millis(stale_after);
    let using = lagging(&nodes, since, |n| n.sealing_key_id != id);
    if !using.is_empty() {
        return Err(usage(format!(
            "{} live node(s) still seal under key {id}: {}. Wait until they follow the active \
             key {active} (`twofold key status`), or restart them",
            using.len(),
            using
                .iter()
                .map(|n| describe(n, now))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    eprintln!("counting sealed values by key ...");
    let census = sweep_sealed(&*cx.store, None, batch, &mut |_| {}).await?;
    let (n, columns) = census.under(id);
    if n > 0 {
        return Err(usage(format!(
            "{n} value(s) are still sealed under key {id} ({}): run `twofold key rotate --key \
             {active}` to re-seal them, then retire {id}",
            columns_text(&columns)
        )));
    }
    let now = SystemClock.now_ms();
    match cx.keys.source_of(id) {
        None => {
            return Err(usage(format!(
                "nothing is sealed under key {id}, but this keyring does not hold it (it holds \
                 {}): remove it wherever it is",
                cx.keys
                    .sources()
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        Some(KeySource::File(path)) => {
            std::fs::remove_file(path)
                .map_err(|e| usage(format!("cannot remove {}: {e}", path.display())))?;
            println!("retired master key {id}: removed {}", path.display());
        }
        Some(source) => println!(
            "nothing is sealed under key {id}: remove it from {source} on every node (this \
             command does not edit configuration)"
        ),
    }
    cx.store
        .append_audit(audit("key.retire", id.to_string(), now))
        .await?;
    println!(
        "remove key {id} from every other node as well ({id}.key or master.key in its data \
         directory, or its configuration), then send each `twofold serve` SIGHUP so no process \
         keeps it in memory. Database backups from before the rotation still need key {id}: \
         keep an offline copy only if you may restore one."
    );
    Ok(())
}

/// `twofold key status`.
pub async fn status(
    config: &Config,
    count: bool,
    stale_after: Duration,
    batch: u32,
) -> Result<(), CliError> {
    let cx = Ctx::open(config).await?;
    let active = cx.active()?;
    println!("master keys of this keyring:");
    for (id, source) in cx.keys.sources() {
        let mut marks = Vec::new();
        if id == active {
            marks.push("active");
        }
        if cx.state.pending.as_deref() == Some(id.as_str()) {
            marks.push("pending");
        }
        if cx.keys.primary() == Some(id.as_str()) {
            marks.push("primary");
        }
        println!("  {id}  {source}  [{}]", marks.join(", "));
    }
    match &cx.state.active {
        Some(a) => println!(
            "active key: {a} (set {})",
            twofold_core::service::notices::human_utc(cx.state.changed_at)
        ),
        None => println!("active key: {active} (each node's primary key; never rotated)"),
    }
    if let Some(p) = &cx.state.pending {
        println!("rotation under way: waiting for every node to hold key {p}");
    }
    println!(
        "the hashing key (hashing.key / hashing_key) is separate and never rotated by `twofold \
         key rotate`"
    );
    let (nodes, now) = cx.nodes().await?;
    let since = now - millis(stale_after);
    println!("nodes:");
    for n in &nodes {
        let state = if n.seen_at >= since {
            "live"
        } else {
            "stopped?"
        };
        println!("  {state}  {}", describe(n, now));
    }
    if count {
        eprintln!("counting sealed values by key ...");
        let census = sweep_sealed(&*cx.store, None, batch, &mut |_| {}).await?;
        println!("sealed values by master key:");
        for (id, n) in census.by_key() {
            println!("  {id}  {n}");
        }
        for (column, key, why) in census.unreadable.iter().take(20) {
            println!("  unreadable {} of {key}: {why}", column.as_str());
        }
    }
    Ok(())
}
