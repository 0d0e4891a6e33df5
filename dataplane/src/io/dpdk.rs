//! The DPDK port backend: EAL, mbuf pools, ethdev ports and their queues, behind the same
//! [`Port`]/[`PacketBuf`] traits as the in-memory backend, so one [`Worker`] loop runs on
//! both.
//!
//! # Ownership and lifetimes
//!
//! - [`Eal`] is the process's one EAL. Every [`Mempool`], [`EthPort`] and [`DpdkQueue`]
//!   keeps it alive, and `rte_eal_cleanup` runs when the last of them is gone (or at
//!   [`Eal::shutdown`]), after the launched lcores have returned.
//! - A [`Mempool`] is freed when its last handle goes *and* none of its mbufs is still out
//!   (held as an [`Mbuf`], or left in a device's ring). Otherwise it is retired, not freed,
//!   so an [`Mbuf`] never points into freed memory; the EAL then skips its cleanup too
//!   (the process exit reclaims the memory) and [`Eal::shutdown`] says why.
//! - An [`EthPort`] is stopped and closed when it and every [`DpdkQueue`] taken from it are
//!   gone. Each queue can be taken once: DPDK's queues are single-threaded, and the queue
//!   claim is what makes [`DpdkQueue`] safe to move to a worker thread.
//! - An [`Mbuf`] owns one single-segment rte_mbuf; dropping it frees it. Transmitting it
//!   hands it to the driver.
//!
//! The hot path ([`DpdkQueue::rx_burst`], [`DpdkQueue::tx_burst`], [`Mbuf`]'s accessors)
//! neither allocates nor makes a syscall: bursts are received straight into the caller's
//! `Vec` and transmitted straight from it (an [`Mbuf`] has the layout of a
//! `*mut rte_mbuf`), and the mbuf's fields are read from Rust through the bindgen layout
//! rather than through a C call per access.
//!
//! # Testing
//!
//! `dataplane/tests/dpdk_*.rs` start a real EAL on `net_ring`/`net_null` vdevs, one EAL per
//! test binary (EAL cannot be initialised twice in a process). They need root and free
//! hugepages:
//!
//! ```text
//! echo 256 > /proc/sys/vm/nr_hugepages
//! cargo test -p rampart-dataplane --test dpdk_ring --test dpdk_eal --test dpdk_eal_retired_pool
//! ```
//!
//! [`Worker`]: crate::worker::Worker

use std::ffi::{c_int, c_void, CStr, CString};
use std::fmt;
use std::mem;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rampart_sys as sys;

use super::{PacketBuf, Port};
use crate::prefetch;

/// What went wrong in a DPDK call or in using this module's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkError {
    /// `rte_eal_init` was already called in this process: DPDK allows it once, even after
    /// a failure or a cleanup.
    AlreadyInitialized,
    /// A DPDK call failed. `errno` is DPDK's (positive) error number.
    Call {
        call: String,
        errno: i32,
        message: String,
    },
    /// An argument this module refused before calling DPDK.
    InvalidArgument(String),
    /// No ethdev port has this name, and probing the device string did not create one.
    NoSuchDevice(String),
    /// The port is already open through another [`EthPort`].
    PortInUse(String),
    /// The queue was already taken from this port.
    QueueInUse { port: String, queue: u16 },
    /// [`Eal::shutdown`] with pools or ports still alive.
    EalInUse,
    /// [`Eal::shutdown`] found mbufs still out of a dropped pool; EAL was not cleaned up.
    MbufsOutstanding { pool: String, in_use: u32 },
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkError::AlreadyInitialized => {
                write!(f, "the DPDK EAL can be initialised only once per process, and it already was")
            }
            DpdkError::Call { call, errno, message } => write!(f, "{call} failed: {message} (errno {errno})"),
            DpdkError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            DpdkError::NoSuchDevice(device) => write!(f, "no DPDK port for device {device:?}"),
            DpdkError::PortInUse(name) => write!(f, "DPDK port {name} is already open"),
            DpdkError::QueueInUse { port, queue } => write!(f, "queue {queue} of DPDK port {port} is already taken"),
            DpdkError::EalInUse => write!(f, "EAL shutdown refused: mbuf pools or ports are still alive"),
            DpdkError::MbufsOutstanding { pool, in_use } => write!(
                f,
                "EAL not cleaned up: {in_use} mbufs of pool {pool} are still out (held or left in a device ring)"
            ),
        }
    }
}

impl std::error::Error for DpdkError {}

/// An error for DPDK call `call` that failed with `errno`.
fn call_error(call: impl Into<String>, errno: i32) -> DpdkError {
    // SAFETY: rte_strerror accepts any number and returns a NUL-terminated string that
    // stays valid until the next call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned();
    DpdkError::Call {
        call: call.into(),
        errno,
        message,
    }
}

/// Ethdev calls return `-errno` on failure.
fn check(call: impl Into<String>, ret: c_int) -> Result<(), DpdkError> {
    if ret < 0 {
        Err(call_error(call, -ret))
    } else {
        Ok(())
    }
}

/// `rte_errno` of this thread (EAL and mempool calls report through it).
fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer.
    unsafe { sys::rampart_errno() }
}

fn c_string(what: &str, s: &str) -> Result<CString, DpdkError> {
    CString::new(s)
        .map_err(|_| DpdkError::InvalidArgument(format!("{what} {s:?} contains a NUL byte")))
}

/// Free huge pages of the default size, from /proc/meminfo (0 if unreadable): what a DPDK
/// process here needs before `rte_eal_init` (`echo 256 > /proc/sys/vm/nr_hugepages`).
pub fn hugepages_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Why EAL cannot start here with this module's usual arguments (`--in-memory`, hugepage
/// backed), or `None` if it should: it needs root and free hugepages. The DPDK tests skip
/// (loudly) only for these reasons; the binary can say this before EAL's own messages.
pub fn missing_prerequisites() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the process's effective uid.
    match std::fs::metadata("/proc/self").map(|m| m.uid()) {
        Ok(0) => {}
        Ok(uid) => return Some(format!("not running as root (euid {uid})")),
        Err(e) => return Some(format!("cannot tell the effective uid: {e}")),
    }
    if hugepages_free() == 0 {
        return Some("no free hugepages (echo 256 > /proc/sys/vm/nr_hugepages)".into());
    }
    None
}

/// The calling thread's EAL lcore id; `None` on threads EAL neither created nor registered.
pub fn current_lcore() -> Option<u32> {
    // SAFETY: reads a thread-local integer.
    let id = unsafe { sys::rampart_lcore_id() };
    (id != sys::LCORE_ID_ANY).then_some(id)
}

// ---------------------------------------------------------------------------------------
// EAL

/// Set once `rte_eal_init` has been called: DPDK refuses a second call in any case, and
/// refusing it here gives a clear error instead of EAL's log line.
static EAL_INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Pools dropped while some of their mbufs were still out: not freed (an [`Mbuf`] may still
/// point into them), checked again at EAL cleanup.
static RETIRED_POOLS: Mutex<Vec<RetiredPool>> = Mutex::new(Vec::new());

struct RetiredPool {
    name: String,
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: a mempool pointer is usable from any thread (its operations are multi-producer,
// multi-consumer); the registry only reads counters and frees it under the mutex.
unsafe impl Send for RetiredPool {}

/// The initialised EAL; cleans up when the last handle (this, a pool, a port) goes.
struct EalRuntime {
    cleaned_up: bool,
}

impl EalRuntime {
    fn cleanup(&mut self) -> Result<(), DpdkError> {
        if self.cleaned_up {
            return Ok(());
        }
        // SAFETY: plain getters, valid after a successful rte_eal_init.
        let main = unsafe { sys::rte_get_main_lcore() };
        if current_lcore().is_some_and(|lcore| lcore != main) {
            // Waiting for every lcore from one of them would wait for itself.
            return Err(DpdkError::InvalidArgument(
                "EAL cleanup must run on the main lcore or a non-EAL thread".into(),
            ));
        }
        // SAFETY: waits until every launched lcore function has returned, so none of them
        // runs while EAL memory goes away.
        unsafe { sys::rte_eal_mp_wait_lcore() };
        {
            let mut retired = RETIRED_POOLS.lock().unwrap_or_else(|e| e.into_inner());
            for pool in retired.iter() {
                // SAFETY: retired pools are never freed while in the registry.
                let in_use = unsafe { sys::rte_mempool_in_use_count(pool.raw.as_ptr()) };
                if in_use > 0 {
                    return Err(DpdkError::MbufsOutstanding {
                        pool: pool.name.clone(),
                        in_use,
                    });
                }
            }
            for pool in retired.drain(..) {
                // SAFETY: no mbuf of the pool is out (checked above) and no handle remains.
                unsafe { sys::rte_mempool_free(pool.raw.as_ptr()) };
            }
        }
        self.cleaned_up = true;
        // SAFETY: no pool, port, queue or mbuf of ours is alive (they all hold this
        // runtime, or were checked above), and no lcore is running.
        check("rte_eal_cleanup", unsafe { sys::rte_eal_cleanup() })
    }
}

impl Drop for EalRuntime {
    fn drop(&mut self) {
        // An error here means memory is left for the process exit to reclaim, which is safe;
        // there is no one to report it to ([`Eal::shutdown`] reports it).
        let _ = self.cleanup();
    }
}

/// The DPDK Environment Abstraction Layer, initialised once per process.
#[derive(Clone)]
pub struct Eal {
    runtime: Arc<EalRuntime>,
}

type LcoreJob = Box<dyn FnOnce() -> i32 + Send>;

impl Eal {
    /// Initialises EAL with `args` (EAL's command line without a program name; `rampart`
    /// is passed as argv[0]), e.g. `["-l", "0,1", "--no-pci", "--in-memory",
    /// "--vdev=net_ring0"]`. The calling thread becomes the main lcore. Fails with
    /// [`DpdkError::AlreadyInitialized`] on a second call in the process.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut argv_owned = vec![c_string("EAL argument", "rampart")?];
        for a in args {
            argv_owned.push(c_string("EAL argument", a)?);
        }
        if EAL_INIT_CALLED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::AlreadyInitialized);
        }
        // EAL may keep pointers into argv for the life of the process (and permutes the
        // array): leak both, once per process.
        let argv: &mut [*mut std::ffi::c_char] = Vec::leak(
            argv_owned
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>(),
        );
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed, and
        // this is the process's only call (EAL_INIT_CALLED).
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(call_error(
                format!("rte_eal_init({})", args.join(" ")),
                rte_errno(),
            ));
        }
        Ok(Eal {
            runtime: Arc::new(EalRuntime { cleaned_up: false }),
        })
    }

    /// The main lcore (the thread that called [`Eal::init`]).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: a getter, valid after rte_eal_init.
        unsafe { sys::rte_get_main_lcore() }
    }

    /// The enabled lcores other than the main one: where [`Eal::launch`] runs jobs.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut lcores = Vec::new();
        // SAFETY: rte_get_next_lcore walks the enabled lcores; starting from "-1" (u32::MAX)
        // without wrapping, it returns RTE_MAX_LCORE when done.
        let mut lcore = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while lcore < sys::RTE_MAX_LCORE {
            lcores.push(lcore);
            // SAFETY: as above.
            lcore = unsafe { sys::rte_get_next_lcore(lcore, 1, 0) };
        }
        lcores
    }

    /// Runs `job` on worker lcore `lcore` (a thread EAL created and pinned); its return value
    /// is what [`Eal::wait`] returns. A panic in `job` is caught and returns -1.
    pub fn launch<F>(&self, lcore: u32, job: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        let job: Box<LcoreJob> = Box::new(Box::new(job));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: run_lcore_job takes ownership of `arg` when DPDK calls it; on failure DPDK
        // never calls it and ownership comes back here.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(run_lcore_job), arg, lcore) };
        if ret < 0 {
            // SAFETY: `arg` came from Box::into_raw above and was not handed over.
            drop(unsafe { Box::from_raw(arg.cast::<LcoreJob>()) });
            return Err(call_error(
                format!("rte_eal_remote_launch(lcore {lcore})"),
                -ret,
            ));
        }
        Ok(())
    }

    /// Waits for the job on `lcore` to finish; returns its value (0 if none was launched).
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: blocks until the lcore is idle; any lcore number is accepted.
        unsafe { sys::rte_eal_wait_lcore(lcore) }
    }

    /// Cleans EAL up now. Refused ([`DpdkError::EalInUse`]) while pools, ports or other
    /// `Eal` handles are alive (cleanup then happens when the last goes); if mbufs of a
    /// dropped pool are still out, EAL is left as is ([`DpdkError::MbufsOutstanding`]).
    pub fn shutdown(self) -> Result<(), DpdkError> {
        match Arc::try_unwrap(self.runtime) {
            Ok(mut runtime) => runtime.cleanup(),
            Err(_) => Err(DpdkError::EalInUse),
        }
    }
}

/// The C entry point of [`Eal::launch`]'s jobs.
unsafe extern "C" fn run_lcore_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<LcoreJob> that Eal::launch leaked for this one call.
    let job = unsafe { Box::from_raw(arg.cast::<LcoreJob>()) };
    // Unwinding into DPDK's C frames would be undefined behaviour.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

// ---------------------------------------------------------------------------------------
// Mempool

/// A pool of packet buffers (`rte_pktmbuf_pool_create`). Cheap to clone; shared by the
/// ports whose RX queues fill from it.
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    raw: NonNull<sys::rte_mempool>,
    name: String,
    _eal: Arc<EalRuntime>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer (the default ring ops); the
// per-lcore caches are indexed by the calling thread's lcore id, so threads never share one.
unsafe impl Send for PoolInner {}
// SAFETY: as above; PoolInner has no interior state of its own.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: the pool is alive (only this drop frees it).
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no handle and no mbuf of the pool remains, so nothing can reach it.
            unsafe { sys::rte_mempool_free(self.raw.as_ptr()) };
        } else {
            RETIRED_POOLS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(RetiredPool {
                    name: mem::take(&mut self.name),
                    raw: self.raw,
                });
        }
    }
}

impl Mempool {
    /// A pool of `mbufs` packet buffers, each with `data_room` bytes (headroom included:
    /// `RTE_MBUF_DEFAULT_BUF_SIZE` = 2176 is 128 headroom + 2048 for a frame) and a per-lcore
    /// cache of `cache` buffers. `name` must be unique in the process. DPDK pools are most
    /// memory-efficient at a power of two minus one buffers.
    pub fn new(
        eal: &Eal,
        name: &str,
        mbufs: u32,
        cache: u32,
        data_room: u16,
    ) -> Result<Mempool, DpdkError> {
        if u32::from(data_room) <= sys::RTE_PKTMBUF_HEADROOM {
            return Err(DpdkError::InvalidArgument(format!(
                "mbuf data room {data_room} leaves no room after the {} bytes of headroom",
                sys::RTE_PKTMBUF_HEADROOM
            )));
        }
        let c_name = c_string("mempool name", name)?;
        // SAFETY: EAL is initialised (we hold `eal`); the name is copied by DPDK.
        let raw = unsafe {
            sys::rte_pktmbuf_pool_create(
                c_name.as_ptr(),
                mbufs,
                cache,
                0,
                data_room,
                sys::rte_socket_id() as c_int,
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            call_error(
                format!("rte_pktmbuf_pool_create({name:?}, {mbufs} mbufs, cache {cache}, data room {data_room})"),
                rte_errno(),
            )
        })?;
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                raw,
                name: name.to_string(),
                _eal: eal.runtime.clone(),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Buffers in the pool, free or not.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is.
        unsafe { (*self.inner.raw.as_ptr()).size }
    }

    /// Free buffers (in the pool's ring and its lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is.
        unsafe { sys::rte_mempool_avail_count(self.inner.raw.as_ptr()) }
    }

    /// Buffers out of the pool: held as [`Mbuf`]s, in device rings, or in flight.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is.
        unsafe { sys::rte_mempool_in_use_count(self.inner.raw.as_ptr()) }
    }

    /// A fresh, empty buffer, if the pool has one.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        alloc_from(self.inner.raw)
    }
}

#[inline]
fn alloc_from(pool: NonNull<sys::rte_mempool>) -> Option<Mbuf> {
    // SAFETY: the pool is alive (the caller holds a handle to it); a returned mbuf is
    // single-segment, refcount 1 and ours.
    NonNull::new(unsafe { sys::rampart_pktmbuf_alloc(pool.as_ptr()) }).map(Mbuf)
}

// ---------------------------------------------------------------------------------------
// Mbuf

/// One owned, single-segment packet buffer. Dropping it returns it to its pool.
///
/// `repr(transparent)` over the pointer: a `[Mbuf]` is a `[*mut rte_mbuf]`, so bursts go to
/// and from DPDK without copying the pointer arrays.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the only owner of its rte_mbuf, and freeing one into its mempool is
// thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else references or frees, with refcount 1,
    /// from a pool that outlives it. Only its first segment is visible through
    /// [`PacketBuf::data`].
    pub unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }

    /// Gives up ownership: the caller must free or transmit the mbuf.
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let raw = self.0;
        mem::forget(self);
        raw
    }

    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn header(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    /// Segments in the chain (1 for every Mbuf this module hands out).
    #[inline]
    pub fn segments(&self) -> u16 {
        self.header().nb_segs
    }

    /// The longest frame this buffer can hold (from its data offset to the buffer's end).
    #[inline]
    pub fn room(&self) -> usize {
        let m = self.header();
        usize::from(m.buf_len) - usize::from(m.data_off)
    }

    /// The first data byte (`rte_pktmbuf_mtod`).
    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        let m = self.header();
        // SAFETY: data_off is within the buffer of buf_len bytes at buf_addr.
        unsafe { m.buf_addr.cast::<u8>().add(usize::from(m.data_off)) }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; after this nothing refers to it.
        unsafe { sys::rampart_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.data().len())
            .field("room", &self.room())
            .finish()
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: the first segment's data_len bytes from mtod are initialised frame bytes
        // in a buffer we own; the borrow of `self` keeps them alive and unaliased.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), usize::from(self.header().data_len)) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive (refcount 1: no
        // other mbuf shares the buffer).
        unsafe {
            std::slice::from_raw_parts_mut(self.data_ptr(), usize::from(self.header().data_len))
        }
    }

    #[inline]
    fn set_frame_len(&mut self, len: usize) -> bool {
        let old = usize::from(self.header().data_len);
        if self.segments() != 1 || len > self.room() {
            return false;
        }
        if len > old {
            // Bytes newly exposed hold a previous packet's data: zero them, as the in-memory
            // buffer does, so nothing stale can leak onto the wire.
            // SAFETY: [old, len) is within the buffer (len <= room).
            unsafe { ptr::write_bytes(self.data_ptr().add(old), 0, len - old) };
        }
        // SAFETY: we own the mbuf exclusively; a single segment's pkt_len is its data_len.
        let m = unsafe { self.0.as_mut() };
        m.data_len = len as u16; // len <= room <= buf_len: fits.
        m.pkt_len = len as u32;
        true
    }
}

// ---------------------------------------------------------------------------------------
// Ethernet ports

/// How to set up an [`EthPort`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// RX queues: one per worker.
    pub rx_queues: u16,
    /// TX queues: one per worker, plus one for the control core.
    pub tx_queues: u16,
    /// Descriptors per RX / TX queue (adjusted to the device's limits).
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Spread flows over the RX queues with a symmetric RSS key (both directions of a
    /// connection reach the same queue), if the device has RSS and there are several queues.
    pub rss: bool,
}

impl Default for PortConfig {
    fn default() -> PortConfig {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: true,
        }
    }
}

/// A device's counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Received frames dropped by the device because the RX ring was full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX failures for want of an mbuf.
    pub rx_nombuf: u64,
}

/// The symmetric Toeplitz key (Woo and Park): 0x6d5a repeated. With it, swapping source and
/// destination (addresses and ports) leaves the Toeplitz hash unchanged, so both directions
/// of a connection land on the same queue and worker. DPDK 22.11's ethdev API cannot ask for
/// `RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ` (that came with 23.11), so the key does it.
pub fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

/// Ports open through an [`EthPort`] (configuring one twice would fight over its queues).
static OPEN_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port id held in [`OPEN_PORTS`]; released on drop.
struct PortClaim(u16);

impl PortClaim {
    fn take(port_id: u16, name: &str) -> Result<PortClaim, DpdkError> {
        let mut open = OPEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if open.contains(&port_id) {
            return Err(DpdkError::PortInUse(name.to_string()));
        }
        open.push(port_id);
        Ok(PortClaim(port_id))
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        OPEN_PORTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.0);
    }
}

struct PortInner {
    port_id: u16,
    name: String,
    mac: [u8; 6],
    rx_queues: u16,
    tx_queues: u16,
    rss: bool,
    started: AtomicBool,
    /// Which RX / TX queues a [`DpdkQueue`] holds.
    taken: Mutex<(Vec<bool>, Vec<bool>)>,
    // Dropped after the port is closed (fields drop after `Drop::drop`): the RX rings hold
    // the pool's mbufs until then.
    pool: Mempool,
    _claim: PortClaim,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // Errors cannot be reported from a drop; a port that fails to stop is closed anyway.
        if self.started.swap(false, Ordering::SeqCst) {
            // SAFETY: no DpdkQueue of this port remains (each holds this PortInner).
            let _ = unsafe { sys::rte_eth_dev_stop(self.port_id) };
        }
        // SAFETY: as above; the port id is not used again by us after this.
        let _ = unsafe { sys::rte_eth_dev_close(self.port_id) };
    }
}

/// A configured, started ethdev port (a NIC or a vdev). Queues are taken from it with
/// [`EthPort::queue`]; it is stopped and closed when it and all its queues are dropped.
pub struct EthPort {
    inner: Arc<PortInner>,
}

impl EthPort {
    /// Opens `device` — a vdev string (`net_ring0`, `net_null0,size=64`) or a PCI address
    /// — and starts it with `config`, RX buffers from `pool`. The device is looked up by
    /// name first (vdevs given to EAL with `--vdev`, probed PCI devices), and probed
    /// (`rte_dev_probe`, with the arguments after the first comma) if it is not a port yet.
    /// Promiscuous mode is switched on where the device has it: CARP's virtual MACs are not
    /// the port's own.
    pub fn open(device: &str, config: &PortConfig, pool: &Mempool) -> Result<EthPort, DpdkError> {
        let name = device.split(',').next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(DpdkError::InvalidArgument(format!(
                "device string {device:?} has no name"
            )));
        }
        if config.rx_queues == 0 || config.tx_queues == 0 {
            return Err(DpdkError::InvalidArgument(format!(
                "port {name} needs at least one RX and one TX queue"
            )));
        }
        let port_id = match port_by_name(name)? {
            Some(id) => id,
            None => {
                let c_device = c_string("device", device)?;
                // SAFETY: EAL is initialised (the pool holds it); the string is copied.
                check(format!("rte_dev_probe({device:?})"), unsafe {
                    sys::rte_dev_probe(c_device.as_ptr())
                })?;
                port_by_name(name)?.ok_or_else(|| DpdkError::NoSuchDevice(device.to_string()))?
            }
        };
        let claim = PortClaim::take(port_id, name)?;

        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: port_id is a valid port; `info` is written by DPDK.
        check(format!("rte_eth_dev_info_get({name})"), unsafe {
            sys::rte_eth_dev_info_get(port_id, &mut info)
        })?;
        if config.rx_queues > info.max_rx_queues || config.tx_queues > info.max_tx_queues {
            return Err(DpdkError::InvalidArgument(format!(
                "port {name} has at most {} RX and {} TX queues; {} and {} asked",
                info.max_rx_queues, info.max_tx_queues, config.rx_queues, config.tx_queues
            )));
        }

        let mut eth_conf = sys::rte_eth_conf::default();
        // SAFETY: reading constants the shim defines.
        let wanted_hash = unsafe {
            sys::rampart_eth_rss_ip | sys::rampart_eth_rss_tcp | sys::rampart_eth_rss_udp
        };
        let rss_hash = wanted_hash & info.flow_type_rss_offloads;
        // vdevs (net_ring, net_null, …) report no RSS offloads: one queue, or queues chosen
        // by the peer.
        let rss = config.rss && config.rx_queues > 1 && rss_hash != 0;
        let mut rss_key = symmetric_rss_key(if info.hash_key_size > 0 {
            usize::from(info.hash_key_size)
        } else {
            40
        });
        if rss {
            eth_conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
            eth_conf.rx_adv_conf.rss_conf = sys::rte_eth_rss_conf {
                rss_key: rss_key.as_mut_ptr(),
                rss_key_len: rss_key.len() as u8,
                rss_hf: rss_hash,
            };
        }
        // SAFETY: a valid port, not started by us; DPDK copies the configuration (and the
        // key) during the call.
        check(format!("rte_eth_dev_configure({name})"), unsafe {
            sys::rte_eth_dev_configure(port_id, config.rx_queues, config.tx_queues, &eth_conf)
        })?;

        let (mut rx_desc, mut tx_desc) = (config.rx_desc, config.tx_desc);
        // SAFETY: a configured port; both counts are in/out parameters.
        check(
            format!("rte_eth_dev_adjust_nb_rx_tx_desc({name})"),
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rx_desc, &mut tx_desc) },
        )?;
        // SAFETY: a valid port. -1 (unknown) is SOCKET_ID_ANY, which queue setup accepts.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) } as u32;
        for q in 0..config.rx_queues {
            // SAFETY: a configured port and queue; NULL rxconf means the device's defaults;
            // the pool outlives the port (PortInner holds it).
            check(format!("rte_eth_rx_queue_setup({name}, {q})"), unsafe {
                sys::rte_eth_rx_queue_setup(
                    port_id,
                    q,
                    rx_desc,
                    socket,
                    ptr::null(),
                    pool.inner.raw.as_ptr(),
                )
            })?;
        }
        for q in 0..config.tx_queues {
            // SAFETY: as above, for TX.
            check(format!("rte_eth_tx_queue_setup({name}, {q})"), unsafe {
                sys::rte_eth_tx_queue_setup(port_id, q, tx_desc, socket, ptr::null())
            })?;
        }
        // SAFETY: a configured port.
        let ret = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
        if ret < 0 && ret != -libc::ENOTSUP {
            check(format!("rte_eth_promiscuous_enable({name})"), ret)?;
        }
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: a valid port; `addr` is written by DPDK.
        check(format!("rte_eth_macaddr_get({name})"), unsafe {
            sys::rte_eth_macaddr_get(port_id, &mut addr)
        })?;
        // A port that fails to configure or start is left as it is (not closed), so it can
        // be opened again with a corrected configuration.
        // SAFETY: a configured port with every queue set up.
        check(format!("rte_eth_dev_start({name})"), unsafe {
            sys::rte_eth_dev_start(port_id)
        })?;
        // From here the port is stopped and closed when the last handle goes.
        Ok(EthPort {
            inner: Arc::new(PortInner {
                port_id,
                name: name.to_string(),
                mac: addr.addr_bytes,
                rx_queues: config.rx_queues,
                tx_queues: config.tx_queues,
                rss,
                started: AtomicBool::new(true),
                taken: Mutex::new((
                    vec![false; config.rx_queues.into()],
                    vec![false; config.tx_queues.into()],
                )),
                pool: pool.clone(),
                _claim: claim,
            }),
        })
    }

    pub fn port_id(&self) -> u16 {
        self.inner.port_id
    }

    /// The ethdev name (the device string up to its first comma).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The port's own MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.inner.mac
    }

    /// Whether RSS spreads received flows over the RX queues (needs several queues and a
    /// device with RSS).
    pub fn rss_enabled(&self) -> bool {
        self.inner.rss
    }

    pub fn promiscuous(&self) -> bool {
        // SAFETY: a valid port.
        unsafe { sys::rte_eth_promiscuous_get(self.inner.port_id) == 1 }
    }

    /// Link state, without waiting for autonegotiation.
    pub fn link_up(&self) -> Result<bool, DpdkError> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: a valid port; `link` is written by DPDK.
        check(
            format!("rte_eth_link_get_nowait({})", self.inner.name),
            unsafe { sys::rte_eth_link_get_nowait(self.inner.port_id, &mut link) },
        )?;
        Ok(u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP)
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: a valid port; `s` is written by DPDK.
        check(format!("rte_eth_stats_get({})", self.inner.name), unsafe {
            sys::rte_eth_stats_get(self.inner.port_id, &mut s)
        })?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Takes queue pair `queue_id`: RX queue `queue_id` if the port has it, and TX queue
    /// `queue_id` if it has that (so with N RX and N+1 TX queues, queue N is the control
    /// core's TX-only queue). Each queue can be held by one [`DpdkQueue`] at a time.
    pub fn queue(&self, queue_id: u16) -> Result<DpdkQueue, DpdkError> {
        let has_rx = queue_id < self.inner.rx_queues;
        let has_tx = queue_id < self.inner.tx_queues;
        if !has_rx && !has_tx {
            return Err(DpdkError::InvalidArgument(format!(
                "port {} has {} RX and {} TX queues; no queue {queue_id}",
                self.inner.name, self.inner.rx_queues, self.inner.tx_queues
            )));
        }
        let mut taken = self.inner.taken.lock().unwrap_or_else(|e| e.into_inner());
        let q = usize::from(queue_id);
        if (has_rx && taken.0[q]) || (has_tx && taken.1[q]) {
            return Err(DpdkError::QueueInUse {
                port: self.inner.name.clone(),
                queue: queue_id,
            });
        }
        if has_rx {
            taken.0[q] = true;
        }
        if has_tx {
            taken.1[q] = true;
        }
        Ok(DpdkQueue {
            port_id: self.inner.port_id,
            queue_id,
            has_rx,
            has_tx,
            pool: self.inner.pool.inner.raw,
            rx_chained_dropped: 0,
            port: self.inner.clone(),
        })
    }

    /// Stops the port (it stays configured; dropping closes it). Queues still held then
    /// receive nothing, and their transmit calls fail.
    pub fn stop(&self) -> Result<(), DpdkError> {
        if self.inner.started.swap(false, Ordering::SeqCst) {
            // SAFETY: a valid, started port.
            check(format!("rte_eth_dev_stop({})", self.inner.name), unsafe {
                sys::rte_eth_dev_stop(self.inner.port_id)
            })?;
        }
        Ok(())
    }
}

/// The most RX and TX queues the port for `device` offers, if it exists already (a vdev
/// given to EAL with `--vdev`, a probed PCI device); `None` if it is not a port yet. Lets a
/// caller fit its queue plan to devices such as AF_XDP or AF_PACKET on a veth, which have a
/// single queue pair.
pub fn max_queues(device: &str) -> Result<Option<(u16, u16)>, DpdkError> {
    let name = device.split(',').next().unwrap_or_default().trim();
    let Some(port_id) = port_by_name(name)? else {
        return Ok(None);
    };
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: port_id is a valid port; `info` is written by DPDK.
    check(format!("rte_eth_dev_info_get({name})"), unsafe {
        sys::rte_eth_dev_info_get(port_id, &mut info)
    })?;
    Ok(Some((info.max_rx_queues, info.max_tx_queues)))
}

fn port_by_name(name: &str) -> Result<Option<u16>, DpdkError> {
    let c_name = c_string("device name", name)?;
    let mut port_id = 0u16;
    // SAFETY: a NUL-terminated name; `port_id` is written on success.
    let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut port_id) };
    Ok((ret == 0).then_some(port_id))
}

// ---------------------------------------------------------------------------------------
// Queues

/// One worker's RX/TX queue pair on one port: the DPDK [`Port`].
pub struct DpdkQueue {
    port_id: u16,
    queue_id: u16,
    has_rx: bool,
    has_tx: bool,
    /// The port's RX pool, for [`Port::alloc`] (kept alive by `port`).
    pool: NonNull<sys::rte_mempool>,
    /// Multi-segment frames received and dropped (the worker handles contiguous frames only;
    /// no device here is set up to scatter).
    rx_chained_dropped: u64,
    port: Arc<PortInner>,
}

// SAFETY: the queue claim (EthPort::queue) guarantees that only this DpdkQueue uses its
// queues, so moving it to another thread never makes two threads poll one queue; the pool
// pointer is to a thread-safe mempool kept alive by `port`.
unsafe impl Send for DpdkQueue {}

impl DpdkQueue {
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }

    /// Multi-segment frames received and dropped by this queue.
    pub fn rx_chained_dropped(&self) -> u64 {
        self.rx_chained_dropped
    }
}

impl Drop for DpdkQueue {
    fn drop(&mut self) {
        let mut taken = self.port.taken.lock().unwrap_or_else(|e| e.into_inner());
        let q = usize::from(self.queue_id);
        if self.has_rx {
            taken.0[q] = false;
        }
        if self.has_tx {
            taken.1[q] = false;
        }
    }
}

impl Port for DpdkQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if !self.has_rx || max == 0 {
            return 0;
        }
        let max = max.min(usize::from(u16::MAX));
        let start = out.len();
        // No allocation once `out` has grown to a burst (the worker reuses its Vec).
        out.reserve(max);
        // SAFETY: `out` has room for `max` more elements, and an Mbuf has the layout of a
        // `*mut rte_mbuf` (repr(transparent) over NonNull), so DPDK writes up to `max`
        // pointers into the spare capacity. This queue is ours alone (the claim).
        let n = unsafe {
            sys::rampart_rx_burst(
                self.port_id,
                self.queue_id,
                out.as_mut_ptr().add(start).cast(),
                max as u16,
            )
        };
        // SAFETY: DPDK initialised the first `n` slots with valid, non-null mbufs that it
        // handed to us (refcount 1).
        unsafe { out.set_len(start + usize::from(n)) };
        // The mbuf headers were last written by whoever filled them (the NIC's driver, or
        // another core): fetch them all at once rather than one miss at a time below.
        for m in &out[start..] {
            prefetch(m.as_ptr());
        }
        let mut i = start;
        while i < out.len() {
            if out[i].segments() != 1 {
                // Rare: keep the order of the others (remove, not swap_remove).
                drop(out.remove(i));
                self.rx_chained_dropped += 1;
                continue;
            }
            prefetch(out[i].data_ptr());
            i += 1;
        }
        out.len() - start
    }

    #[inline]
    fn tx_burst(&mut self, bufs: &mut Vec<Mbuf>) -> usize {
        let total = bufs.len();
        if !self.has_tx || total == 0 {
            return 0;
        }
        let mut sent = 0;
        while sent < total {
            let chunk = (total - sent).min(usize::from(u16::MAX));
            // SAFETY: as in rx_burst, `bufs[sent..]` is an array of valid mbuf pointers.
            // DPDK takes ownership of the first `n` of them and only reads the array.
            let n = unsafe {
                sys::rampart_tx_burst(
                    self.port_id,
                    self.queue_id,
                    bufs.as_mut_ptr().add(sent).cast(),
                    chunk as u16,
                )
            };
            sent += usize::from(n);
            if usize::from(n) < chunk {
                break; // The ring is full.
            }
        }
        // The driver owns the first `sent` mbufs now: move the unsent ones to the front over
        // them, without dropping (freeing) the sent ones.
        // SAFETY: both ranges are within the Vec's initialised length; `copy` handles the
        // overlap; after set_len, every remaining element is a distinct unsent Mbuf.
        unsafe {
            ptr::copy(bufs.as_ptr().add(sent), bufs.as_mut_ptr(), total - sent);
            bufs.set_len(total - sent);
        }
        sent
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        alloc_from(self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Toeplitz hash (Microsoft's RSS specification): for each set bit of the input, XOR in
    /// the 32 key bits starting at that bit position.
    fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
        let key_bit = |i: usize| (key[i / 8] >> (7 - i % 8)) & 1;
        let mut window: u32 = (0..32).fold(0, |w, i| (w << 1) | u32::from(key_bit(i)));
        let mut hash = 0;
        for (byte_index, byte) in input.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    hash ^= window;
                }
                window = (window << 1) | u32::from(key_bit(byte_index * 8 + bit + 32));
            }
        }
        hash
    }

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        [
            &src[..],
            &dst[..],
            &sport.to_be_bytes()[..],
            &dport.to_be_bytes()[..],
        ]
        .concat()
    }

    #[test]
    fn toeplitz_matches_the_rss_specification_vector() {
        // Microsoft's verification suite: 66.9.149.187:2794 -> 161.142.100.80:1766 with the
        // default key hashes to 0x51ccc178.
        let ms_key = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        assert_eq!(
            toeplitz(
                &ms_key,
                &tuple([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766)
            ),
            0x51cc_c178
        );
    }

    #[test]
    fn symmetric_key_hashes_both_directions_of_a_flow_alike() {
        let key = symmetric_rss_key(40);
        assert_eq!(&key[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
        let mut distinct = std::collections::HashSet::new();
        for i in 0..200u8 {
            let (a, b) = ([198, 18, i, 2], [203, 0, 113, i.wrapping_mul(7)]);
            let (pa, pb) = (1024 + u16::from(i) * 13, 443);
            let forward = toeplitz(&key, &tuple(a, b, pa, pb));
            assert_eq!(forward, toeplitz(&key, &tuple(b, a, pb, pa)), "flow {i}");
            distinct.insert(forward);
        }
        // Symmetric, yet still spreading flows.
        assert!(
            distinct.len() > 150,
            "{} distinct hashes of 200 flows",
            distinct.len()
        );
    }
}
