//! The persistent pod address allocator.
//!
//! One JSON ledger per node network (`ipam.json` in the state directory) maps
//! each handed-out address to the sandbox that owns it. Every operation takes
//! an exclusive `flock` on `ipam.lock`, reads the ledger, and replaces it
//! atomically (write, fsync, rename), so concurrent callers in one process or
//! several never hand out an address twice, and a crash leaves either the old
//! or the new ledger. Allocation per sandbox is idempotent, release is
//! idempotent, and [`IpAllocator::retain`] reconciles the ledger with the
//! sandboxes that still exist after a crash.
//!
//! Addresses are handed out round-robin after the last one given, so a freed
//! address is reused only once the others have had their turn (stale ARP and
//! connection state toward a dead pod then has time to age out).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

const LEDGER: &str = "ipam.json";
const LOCK: &str = "ipam.lock";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("the pod address range {subnet} is exhausted: all {capacity} addresses are in use")]
    Exhausted { subnet: Ipv4Net, capacity: u32 },
    #[error("pod CIDR {0} is too small: it needs a gateway and at least one pod address (at most /30)")]
    SubnetTooSmall(Ipv4Net),
    #[error("the address ledger {path} belongs to pod CIDR {stored}, not {configured}, and still holds {count} addresses")]
    SubnetChanged { path: PathBuf, stored: Ipv4Net, configured: Ipv4Net, count: usize },
    #[error("address ledger {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("address ledger {path} is not valid: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// What is on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Ledger {
    subnet: Ipv4Net,
    /// The address handed out last; the next search starts after it.
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<Ipv4Addr, Allocation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Allocation {
    /// The sandbox id.
    owner: String,
    /// Whether the owner was given hostPort mappings, so teardown knows
    /// whether there are nftables elements to look for.
    host_ports: bool,
}

/// An address held by a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    /// The holder has (or had) hostPort mappings.
    pub host_ports: bool,
}

/// Hands out the pod addresses of one node's pod CIDR.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    subnet: Ipv4Net,
    dir: PathBuf,
}

impl IpAllocator {
    /// An allocator for `subnet` keeping its ledger in `dir` (created if needed).
    /// The subnet's first host address is the gateway; pods get the rest.
    pub fn new(subnet: Ipv4Net, dir: impl Into<PathBuf>) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| IpamError::Io { path: dir.clone(), source })?;
        Ok(Self { subnet, dir })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The node's address on the pod network: the subnet's first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The address of `owner`, handing out a free one if it has none yet;
    /// `host_ports` records that the owner gets hostPort mappings (it stays
    /// recorded until the address is released).
    pub fn allocate(&self, owner: &str, host_ports: bool) -> Result<Ipv4Addr, IpamError> {
        self.with_ledger(|ledger| {
            if let Some((address, held)) = ledger.allocations.iter_mut().find(|(_, held)| held.owner == owner) {
                let changed = host_ports && !held.host_ports;
                held.host_ports |= host_ports;
                return Ok((*address, changed));
            }
            let address = self.next_free(ledger)?;
            ledger.allocations.insert(address, Allocation { owner: owner.to_owned(), host_ports });
            ledger.last = Some(address);
            Ok((address, true))
        })
    }

    /// What `owner` holds, if anything.
    pub fn lookup(&self, owner: &str) -> Result<Option<Lease>, IpamError> {
        self.with_ledger(|ledger| {
            let lease = owner_address(ledger, owner)
                .map(|address| Lease { address, host_ports: ledger.allocations[&address].host_ports });
            Ok((lease, false))
        })
    }

    /// Frees the address of `owner`; returns it, or `None` if it held none.
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        self.with_ledger(|ledger| {
            let address = owner_address(ledger, owner);
            if let Some(address) = address {
                ledger.allocations.remove(&address);
            }
            Ok((address, address.is_some()))
        })
    }

    /// Frees every address whose owner `keep` rejects (sandboxes that no
    /// longer exist); returns what was freed.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        self.with_ledger(|ledger| {
            let (kept, freed): (BTreeMap<_, _>, BTreeMap<_, _>) =
                std::mem::take(&mut ledger.allocations).into_iter().partition(|(_, held)| keep(&held.owner));
            ledger.allocations = kept;
            let changed = !freed.is_empty();
            Ok((freed.into_iter().map(|(address, held)| (address, held.owner)).collect(), changed))
        })
    }

    /// Every address handed out, with its owner.
    pub fn allocations(&self) -> Result<BTreeMap<Ipv4Addr, String>, IpamError> {
        self.with_ledger(|ledger| {
            Ok((ledger.allocations.iter().map(|(address, held)| (*address, held.owner.clone())).collect(), false))
        })
    }

    /// The first free pod address after the last one handed out, wrapping around.
    fn next_free(&self, ledger: &Ledger) -> Result<Ipv4Addr, IpamError> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.subnet.broadcast()) - 1;
        let capacity = last - first + 1;
        let start = match ledger.last.map(u32::from) {
            Some(previous) if (first..last).contains(&previous) => previous + 1,
            _ => first,
        };
        (0..capacity)
            .map(|offset| Ipv4Addr::from(first + (start - first + offset) % capacity))
            .find(|address| !ledger.allocations.contains_key(address))
            .ok_or(IpamError::Exhausted { subnet: self.subnet, capacity })
    }

    /// Runs `f` on the ledger under the lock; `f` says whether it changed it.
    fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> Result<(T, bool), IpamError>) -> Result<T, IpamError> {
        let lock_path = self.dir.join(LOCK);
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // Released when the guard drops, also on every early return below.
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| IpamError::Io { path: lock_path.clone(), source: errno.into() })?;

        let mut ledger = self.load()?;
        let (value, changed) = f(&mut ledger)?;
        if changed {
            self.store(&ledger)?;
        }
        Ok(value)
    }

    fn load(&self) -> Result<Ledger, IpamError> {
        let path = self.dir.join(LEDGER);
        let ledger = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Ledger>(&bytes)
                .map_err(|source| IpamError::Corrupt { path: path.clone(), source })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Ledger { subnet: self.subnet, last: None, allocations: BTreeMap::new() })
            }
            Err(source) => return Err(IpamError::Io { path, source }),
        };
        if ledger.subnet == self.subnet {
            Ok(ledger)
        } else if ledger.allocations.is_empty() {
            // The node's pod CIDR changed while nothing was running: start over.
            Ok(Ledger { subnet: self.subnet, last: None, allocations: BTreeMap::new() })
        } else {
            Err(IpamError::SubnetChanged {
                path,
                stored: ledger.subnet,
                configured: self.subnet,
                count: ledger.allocations.len(),
            })
        }
    }

    /// Replaces the ledger atomically and durably.
    fn store(&self, ledger: &Ledger) -> Result<(), IpamError> {
        let path = self.dir.join(LEDGER);
        let temporary = self.dir.join(format!("{LEDGER}.tmp"));
        let bytes = serde_json::to_vec_pretty(ledger)
            .map_err(|source| IpamError::Corrupt { path: path.clone(), source })?;
        let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io_error(&temporary))?;
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io_error(&self.dir))
    }
}

/// Wraps an I/O error with the path it happened on.
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> IpamError {
    let path = path.to_owned();
    move |source| IpamError::Io { path, source }
}

fn owner_address(ledger: &Ledger, owner: &str) -> Option<Ipv4Addr> {
    ledger.allocations.iter().find(|(_, held)| held.owner == owner).map(|(address, _)| *address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator(cidr: &str) -> (tempfile::TempDir, IpAllocator) {
        let dir = tempfile::tempdir().expect("temp dir");
        let subnet = cidr.parse().expect("cidr");
        let allocator = IpAllocator::new(subnet, dir.path().join("ipam")).expect("allocator");
        (dir, allocator)
    }

    #[test]
    fn gateway_is_first_host_and_pods_follow() {
        let (_dir, ipam) = allocator("10.244.1.0/24");
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(ipam.allocate("a", false).unwrap(), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(ipam.allocate("b", false).unwrap(), Ipv4Addr::new(10, 244, 1, 3));
    }

    #[test]
    fn allocation_is_idempotent_per_owner() {
        let (_dir, ipam) = allocator("10.244.1.0/24");
        let first = ipam.allocate("a", false).unwrap();
        assert_eq!(ipam.allocate("a", false).unwrap(), first);
        assert_eq!(ipam.allocations().unwrap().len(), 1);
    }

    #[test]
    fn exhaustion_is_a_clear_error_and_release_makes_room() {
        // /29: .1 gateway, .2–.6 pods, .7 broadcast.
        let (_dir, ipam) = allocator("10.244.9.0/29");
        for owner in ["a", "b", "c", "d", "e"] {
            ipam.allocate(owner, false).unwrap();
        }
        let err = ipam.allocate("f", false).unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { capacity: 5, .. }), "{err}");
        assert!(err.to_string().contains("10.244.9.0/29"), "{err}");
        let freed = ipam.release("c").unwrap().expect("c held an address");
        assert_eq!(ipam.release("c").unwrap(), None, "release is idempotent");
        assert_eq!(ipam.allocate("f", false).unwrap(), freed);
    }

    #[test]
    fn host_ports_are_remembered_until_release() {
        let (_dir, ipam) = allocator("10.244.1.0/24");
        let address = ipam.allocate("a", true).unwrap();
        assert_eq!(ipam.allocate("a", false).unwrap(), address);
        assert_eq!(ipam.lookup("a").unwrap(), Some(Lease { address, host_ports: true }));
        ipam.release("a").unwrap();
        assert_eq!(ipam.lookup("a").unwrap(), None);
    }

    #[test]
    fn round_robin_does_not_reuse_at_once() {
        let (_dir, ipam) = allocator("10.244.1.0/24");
        let a = ipam.allocate("a", false).unwrap();
        ipam.release("a").unwrap();
        assert_ne!(ipam.allocate("b", false).unwrap(), a);
    }

    #[test]
    fn ledger_survives_a_new_allocator() {
        let (dir, ipam) = allocator("10.244.1.0/24");
        let a = ipam.allocate("a", false).unwrap();
        let again = IpAllocator::new("10.244.1.0/24".parse().unwrap(), dir.path().join("ipam")).unwrap();
        assert_eq!(again.lookup("a").unwrap(), Some(Lease { address: a, host_ports: false }));
        assert_ne!(again.allocate("b", false).unwrap(), a);
    }

    #[test]
    fn retain_frees_dead_owners() {
        let (_dir, ipam) = allocator("10.244.1.0/24");
        ipam.allocate("live", false).unwrap();
        let dead = ipam.allocate("dead", false).unwrap();
        let freed = ipam.retain(|owner| owner == "live").unwrap();
        assert_eq!(freed, vec![(dead, "dead".to_owned())]);
        assert_eq!(ipam.allocations().unwrap().len(), 1);
    }

    #[test]
    fn changed_subnet_with_live_pods_is_refused() {
        let (dir, ipam) = allocator("10.244.1.0/24");
        ipam.allocate("a", false).unwrap();
        let moved = IpAllocator::new("10.244.2.0/24".parse().unwrap(), dir.path().join("ipam")).unwrap();
        assert!(matches!(moved.allocate("b", false), Err(IpamError::SubnetChanged { count: 1, .. })));
    }

    #[test]
    fn too_small_subnet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = IpAllocator::new("10.244.1.0/31".parse().unwrap(), dir.path()).unwrap_err();
        assert!(matches!(err, IpamError::SubnetTooSmall(_)));
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let (_dir, ipam) = allocator("10.244.1.0/24");
        let addresses: Vec<Ipv4Addr> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..16)
                .map(|n| {
                    let ipam = ipam.clone();
                    scope.spawn(move || ipam.allocate(&format!("pod-{n}"), false).unwrap())
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<_> = addresses.iter().collect();
        assert_eq!(unique.len(), addresses.len());
    }
}
