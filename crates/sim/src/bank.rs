//! The bank workload: transactional clients ([`crate::txn_client`]) move money between
//! accounts while readers take snapshots of every account at one start_ts; each snapshot
//! must add up to the opening total with no account below zero (`history::bank`).
//!
//! Client 0 first opens the accounts (one transaction writes every opening balance; it
//! reads first, so a retry after an unknown outcome never opens them twice); the others
//! wait for that. Accounts are spread over the hot keys' regions (`k<i>-acct<j>`: a split
//! at a hot key puts accounts in different regions), so transfers cross regions.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use history::bank::BankRead;
use rand::Rng;

use crate::client::show;
use crate::txn_client::{TxnEnd, TxnEnv, TXN_TIMEOUT_NS};
use crate::world::Sim;

/// Every account's opening balance.
pub const OPENING: i64 = 100;

/// The bank's accounts and what its readers saw.
pub struct Bank {
    /// Account keys.
    pub accounts: Vec<Vec<u8>>,
    /// The opening transaction committed (a reader saw every account).
    pub opened: Cell<bool>,
    /// Every snapshot read to the end.
    pub reads: RefCell<Vec<BankRead>>,
    /// A read that saw some accounts opened and not others.
    pub partial_open: RefCell<Vec<String>>,
}

impl Bank {
    /// `n` accounts spread over `keys` hot keys.
    pub fn new(n: usize, keys: usize) -> Bank {
        Bank {
            accounts: (0..n)
                .map(|j| format!("k{}-acct{j}", j % keys.max(1)).into_bytes())
                .collect(),
            opened: Cell::new(false),
            reads: RefCell::new(Vec::new()),
            partial_open: RefCell::new(Vec::new()),
        }
    }

    /// The opening balances, as `history::bank::check` wants them.
    pub fn initial(&self) -> BTreeMap<String, i64> {
        self.accounts.iter().map(|a| (show(a), OPENING)).collect()
    }
}

fn balance(v: &[u8]) -> i64 {
    show(v).parse().unwrap_or(i64::MIN)
}

/// Reads every account at one start ts; `None` if a read failed.
async fn snapshot(env: &TxnEnv, bank: &Bank, ts: u64, deadline: u64) -> Option<BankRead> {
    let mut balances = BTreeMap::new();
    for a in &bank.accounts {
        match env.get(a, ts, deadline).await {
            Ok(Some(v)) => {
                balances.insert(show(a), balance(&v));
            }
            Ok(None) => {}
            Err(why) => {
                env.log(format!("bank: read at {ts} gave up: {why}"));
                return None;
            }
        }
    }
    Some(BankRead { ts, balances })
}

/// Client 0's first job: open every account at [`OPENING`], once.
async fn open(env: &TxnEnv, bank: &Bank) {
    while env.load.get() && !bank.opened.get() {
        let deadline = env.clock.now() + TXN_TIMEOUT_NS;
        let Some(t) = env.begin(deadline).await else {
            continue;
        };
        let Some(read) = snapshot(env, bank, t.ts, deadline).await else {
            env.pause(10, 50).await;
            continue;
        };
        if read.balances.len() == bank.accounts.len() {
            bank.opened.set(true);
            env.log(format!("bank: accounts open (seen at {})", t.ts));
            return;
        }
        if !read.balances.is_empty() {
            bank.partial_open.borrow_mut().push(format!(
                "read at {} saw {} of {} accounts opened by one transaction",
                t.ts,
                read.balances.len(),
                bank.accounts.len()
            ));
            return;
        }
        let writes: Vec<(Vec<u8>, Vec<u8>)> = bank
            .accounts
            .iter()
            .map(|a| (a.clone(), OPENING.to_string().into_bytes()))
            .collect();
        let end = env.write(&writes, t.ts, deadline).await;
        env.log(format!("bank: open at {}: {end:?}", t.ts));
    }
}

/// One transfer of a drawn amount between two drawn accounts.
async fn transfer(env: &TxnEnv, bank: &Bank) {
    let deadline = env.clock.now() + TXN_TIMEOUT_NS;
    let n = bank.accounts.len() as u64;
    let from = env.draw(0, n - 1) as usize;
    let to = (from + env.draw(1, n - 1) as usize) % n as usize;
    let amount = env.draw(1, 30) as i64;
    let Some(t) = env.begin(deadline).await else {
        return;
    };
    let (a, b) = (&bank.accounts[from], &bank.accounts[to]);
    let (va, vb) = match (
        env.get(a, t.ts, deadline).await,
        env.get(b, t.ts, deadline).await,
    ) {
        (Ok(Some(x)), Ok(Some(y))) => (balance(&x), balance(&y)),
        other => {
            env.stats.borrow_mut().aborted += 1;
            env.log(format!(
                "bank: transfer at {} could not read: {other:?}",
                t.ts
            ));
            return;
        }
    };
    if va < amount {
        env.stats.borrow_mut().refused += 1;
        return;
    }
    let writes = [
        (a.clone(), (va - amount).to_string().into_bytes()),
        (b.clone(), (vb + amount).to_string().into_bytes()),
    ];
    let end = env.write(&writes, t.ts, deadline).await;
    let what = match &end {
        TxnEnd::Committed(c) => format!("committed at {c}"),
        TxnEnd::Aborted(w) => format!("aborted: {w}"),
        TxnEnd::Unknown(w) => format!("unknown: {w}"),
    };
    env.log(format!(
        "bank: transfer {amount} {} -> {} at {}: {what}",
        show(a),
        show(b),
        t.ts
    ));
}

/// A bank client: transfers and snapshot reads until the load phase ends.
pub async fn client(env: Rc<TxnEnv>, bank: Rc<Bank>, id: usize) {
    env.active.set(env.active.get() + 1);
    if id == 0 {
        open(&env, &bank).await;
    }
    while env.load.get() && !bank.opened.get() && bank.partial_open.borrow().is_empty() {
        env.pause(20, 50).await;
    }
    while env.load.get() && bank.opened.get() {
        if env.chance(0.3) {
            let deadline = env.clock.now() + TXN_TIMEOUT_NS;
            if let Some(t) = env.begin(deadline).await {
                if let Some(read) = snapshot(&env, &bank, t.ts, deadline).await {
                    env.stats.borrow_mut().snapshots += 1;
                    bank.reads.borrow_mut().push(read);
                }
            }
        } else {
            transfer(&env, &bank).await;
        }
        env.pause(0, 20).await;
    }
    env.active.set(env.active.get() - 1);
}

impl Sim {
    /// Starts the transactional clients the configuration asks for.
    pub(crate) fn start_txn_clients(&mut self) {
        if self.cfg.bank_clients == 0 && self.cfg.list_clients == 0 {
            return;
        }
        let env = Rc::new(TxnEnv::new(
            self.stores.iter().map(|s| s.txn.clone()).collect(),
            self.stores.iter().map(|s| s.kv().clone()).collect(),
            self.scheduler.clone(),
            self.tasks.clock(),
            rand::SeedableRng::seed_from_u64(self.rng.gen()),
            self.cfg.op_timeout_ms * 1_000_000,
        ));
        if self.cfg.bank_clients > 0 {
            let bank = Rc::new(Bank::new(self.cfg.accounts, self.keys.len()));
            for id in 0..self.cfg.bank_clients {
                self.tasks.spawn(client(env.clone(), bank.clone(), id));
            }
            let (clients, accounts) = (self.cfg.bank_clients, bank.accounts.len());
            self.log(format_args!(
                "bank: {clients} clients on {accounts} accounts"
            ));
            self.bank = Some(bank);
        }
        if self.cfg.list_clients > 0 {
            let lists = Rc::new(crate::appends::Lists::new(self.cfg.lists, self.keys.len()));
            for _ in 0..self.cfg.list_clients {
                self.tasks
                    .spawn(crate::appends::client(env.clone(), lists.clone()));
            }
            let (clients, n) = (self.cfg.list_clients, lists.keys.len());
            self.log(format_args!("lists: {clients} clients on {n} lists"));
            self.lists = Some(lists);
        }
        self.txn_env = Some(env);
    }

    /// Moves the transactional clients' trace lines into the trace.
    pub(crate) fn collect_txn_trace(&mut self) {
        let gc = std::mem::take(&mut *self.gc_trace.borrow_mut());
        for line in gc {
            self.log(format_args!("{line}"));
        }
        let Some(env) = self.txn_env.clone() else {
            return;
        };
        for line in env.take_trace() {
            self.log(format_args!("{line}"));
        }
    }

    /// Whether no transactional client is running.
    pub(crate) fn txn_clients_done(&self) -> bool {
        self.txn_env.as_ref().is_none_or(|e| e.active.get() == 0)
    }

    /// Checks the bank's snapshots (`history::bank`).
    pub(crate) fn check_bank(&mut self) {
        let Some(bank) = self.bank.clone() else {
            return;
        };
        self.violations
            .extend(bank.partial_open.borrow().iter().cloned());
        let errors = history::bank::check(&bank.initial(), &bank.reads.borrow());
        for e in errors.iter().take(10) {
            self.violations.push(format!("bank: {e}"));
        }
    }
}
