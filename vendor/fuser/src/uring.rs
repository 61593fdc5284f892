//! FUSE over io_uring (ovlfuse patch).
//!
//! Linux 6.14 added a second transport beside read/write on /dev/fuse
//! (Documentation/filesystems/fuse-io-uring.rst). The daemon registers ring
//! entries, each a header buffer and a payload buffer, with
//! `IORING_OP_URING_CMD` commands on the /dev/fuse fd, one queue per possible
//! CPU. A request made on CPU n completes a pending command of queue n; the
//! daemon answers it in the same entry's buffers and hands the entry back
//! with COMMIT_AND_FETCH, which is the reply and the wait for the next
//! request in one submission. Forgets, interrupts and notifications still go
//! through /dev/fuse, so a classic reader keeps running beside the rings.
//!
//! Requests are copied out of the entry before dispatch: a handler may keep
//! borrowing its request (a name, the data of a write) after it has replied,
//! and the reply overwrites the entry's buffers.

use std::io;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::thread::ThreadId;

use crate::dev_fuse::DevFuse;
use crate::passthrough::BackingId;

// io_uring ABI (include/uapi/linux/io_uring.h).
const IORING_OP_URING_CMD: u8 = 46;
const IORING_SETUP_SQE128: u32 = 1 << 10;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_FEAT_SINGLE_MMAP: u32 = 1;
const IORING_OFF_SQ_RING: libc::off_t = 0;
const IORING_OFF_CQ_RING: libc::off_t = 0x800_0000;
const IORING_OFF_SQES: libc::off_t = 0x1000_0000;
/// With SQE128 each submission entry is 128 bytes; the command's own data
/// (`struct fuse_uring_cmd_req`) starts at byte 48.
const SQE_SIZE: usize = 128;
const SQE_CMD_OFFSET: usize = 48;

// FUSE's part (include/uapi/linux/fuse.h).
const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;
const IN_HEADER_SIZE: usize = 40;
const OUT_HEADER_SIZE: usize = 16;
const OP_IN_OUT_SIZE: usize = 128;
const FUSE_WRITE: u32 = 16;

#[repr(C)]
#[derive(Default)]
struct SqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqringOffsets,
    cq_off: CqringOffsets,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// `struct fuse_uring_ent_in_out`.
#[repr(C)]
#[derive(Clone, Copy)]
struct EntInOut {
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// `struct fuse_uring_req_header`: the entry's header buffer.
#[repr(C)]
struct ReqHeader {
    in_out: [u8; 128],
    op_in: [u8; OP_IN_OUT_SIZE],
    ent: EntInOut,
}

/// One mmap'd region of the ring, unmapped on drop.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn map(fd: RawFd, len: usize, offset: libc::off_t) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping of the ring fd; the kernel checks
        // the offset and length against the ring it made.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr: p.cast(), len })
    }

    /// A pointer `off` bytes into the region.
    fn at<T>(&self, off: u32) -> *mut T {
        debug_assert!(off as usize + size_of::<T>() <= self.len);
        // SAFETY: the kernel's offsets lie inside the region it sized.
        unsafe { self.ptr.add(off as usize).cast() }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by `map` and nothing points into it
        // once its ring is dropped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The submission side, shared by the queue's thread and any thread that
/// replies late.
struct Sq {
    tail: u32,
}

/// A minimal io_uring: 128-byte submission entries, filled under a lock,
/// and completions read by the queue's own thread only.
struct Ring {
    fd: OwnedFd,
    _sq_region: Region,
    _cq_region: Option<Region>,
    sqes: Region,
    sq_head: *const AtomicU32,
    sq_tail: *const AtomicU32,
    sq_mask: u32,
    sq_entries: u32,
    sq_array: *mut u32,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_mask: u32,
    cqes: *const Cqe,
    sq: Mutex<Sq>,
}

// SAFETY: the raw pointers point into shared mappings that live as long as
// the ring; the submission side is only written under `sq`, the completion
// side only by the queue's thread.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    fn new(entries: u32) -> io::Result<Ring> {
        let mut p = Params {
            flags: IORING_SETUP_SQE128,
            ..Params::default()
        };
        // SAFETY: io_uring_setup reads and fills `p`, which outlives the call.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, &mut p as *mut Params) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let raw = fd.as_raw_fd();
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * size_of::<u32>();
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * size_of::<Cqe>();
        let single = p.features & IORING_FEAT_SINGLE_MMAP != 0;
        let sq_region = Region::map(
            raw,
            if single { sq_len.max(cq_len) } else { sq_len },
            IORING_OFF_SQ_RING,
        )?;
        let cq_region = if single {
            None
        } else {
            Some(Region::map(raw, cq_len, IORING_OFF_CQ_RING)?)
        };
        let sqes = Region::map(raw, p.sq_entries as usize * SQE_SIZE, IORING_OFF_SQES)?;
        let cq = cq_region.as_ref().unwrap_or(&sq_region);
        // SAFETY: the masks are plain u32s the kernel wrote at setup.
        let (sq_mask, cq_mask) = unsafe {
            (
                *sq_region.at::<u32>(p.sq_off.ring_mask),
                *cq.at::<u32>(p.cq_off.ring_mask),
            )
        };
        let ring = Ring {
            sq_head: sq_region.at(p.sq_off.head),
            sq_tail: sq_region.at(p.sq_off.tail),
            sq_mask,
            sq_entries: p.sq_entries,
            sq_array: sq_region.at(p.sq_off.array),
            cq_head: cq.at(p.cq_off.head),
            cq_tail: cq.at(p.cq_off.tail),
            cq_mask,
            cqes: cq.at(p.cq_off.cqes),
            fd,
            _sq_region: sq_region,
            _cq_region: cq_region,
            sqes,
            sq: Mutex::new(Sq { tail: 0 }),
        };
        // SAFETY: the kernel starts the tail at 0, but read it to be exact.
        ring.sq.lock().unwrap().tail = unsafe { (*ring.sq_tail).load(Ordering::Acquire) };
        Ok(ring)
    }

    /// Queue one FUSE command; it is submitted by the next `enter`.
    fn push(
        &self,
        cmd_op: u32,
        fuse_fd: RawFd,
        user_data: u64,
        iov: Option<&[libc::iovec; 2]>,
        req: [u8; 24],
    ) {
        let mut sq = self.sq.lock().unwrap();
        // SAFETY: the head is an atomic u32 the kernel advances.
        let head = unsafe { (*self.sq_head).load(Ordering::Acquire) };
        // Each entry has at most one command in flight and the ring has
        // room for all of them, so the queue cannot be full.
        assert!(
            sq.tail.wrapping_sub(head) < self.sq_entries,
            "io_uring SQ full"
        );
        let idx = sq.tail & self.sq_mask;
        let mut sqe = [0u8; SQE_SIZE];
        sqe[0] = IORING_OP_URING_CMD;
        sqe[4..8].copy_from_slice(&fuse_fd.to_ne_bytes());
        sqe[8..12].copy_from_slice(&cmd_op.to_ne_bytes());
        if let Some(iov) = iov {
            sqe[16..24].copy_from_slice(&(iov.as_ptr() as u64).to_ne_bytes());
            sqe[24..28].copy_from_slice(&2u32.to_ne_bytes());
        }
        sqe[32..40].copy_from_slice(&user_data.to_ne_bytes());
        sqe[SQE_CMD_OFFSET..SQE_CMD_OFFSET + 24].copy_from_slice(&req);
        // SAFETY: slot `idx` is free (the kernel consumed it: tail - head <
        // entries) and only written under the lock; the tail store below
        // publishes it.
        unsafe {
            ptr::copy_nonoverlapping(
                sqe.as_ptr(),
                self.sqes.ptr.add(idx as usize * SQE_SIZE),
                SQE_SIZE,
            );
            *self.sq_array.add(idx as usize) = idx;
            sq.tail = sq.tail.wrapping_add(1);
            (*self.sq_tail).store(sq.tail, Ordering::Release);
        }
    }

    /// Submit what was queued and, if `wait`, sleep until a completion.
    fn enter(&self, wait: bool) -> io::Result<()> {
        let (min, flags) = if wait {
            (1u32, IORING_ENTER_GETEVENTS)
        } else {
            (0, 0)
        };
        loop {
            // Everything written and not yet taken by the kernel (its head):
            // an earlier enter that failed or was interrupted leaves nothing
            // behind.
            let n = {
                let sq = self.sq.lock().unwrap();
                // SAFETY: the head is an atomic u32 the kernel advances.
                sq.tail
                    .wrapping_sub(unsafe { (*self.sq_head).load(Ordering::Acquire) })
            };
            if n == 0 && !wait {
                return Ok(());
            }
            // SAFETY: no signal mask argument (null, size 0).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    self.fd.as_raw_fd(),
                    n,
                    min,
                    flags,
                    ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    /// Take the next completion, if any (the queue's thread only).
    fn pop(&self) -> Option<Cqe> {
        // SAFETY: the head is ours to move, the tail the kernel's; the entry
        // at head is valid once the tail (acquire) has passed it.
        unsafe {
            let head = (*self.cq_head).load(Ordering::Relaxed);
            let tail = (*self.cq_tail).load(Ordering::Acquire);
            if head == tail {
                return None;
            }
            let cqe = *self.cqes.add((head & self.cq_mask) as usize);
            (*self.cq_head).store(head.wrapping_add(1), Ordering::Release);
            Some(cqe)
        }
    }
}

/// One ring entry: its header and payload buffers, registered once.
struct Entry {
    header: Box<std::cell::UnsafeCell<ReqHeader>>,
    /// PREFIX bytes, then the payload buffer the kernel knows: a WRITE is
    /// dispatched in place, its headers copied into the prefix so that the
    /// request lies end to end without copying its data.
    room: Box<[std::cell::UnsafeCell<u8>]>,
    iov: [libc::iovec; 2],
    /// Holds a request not yet answered: one commit per request, never two.
    busy: AtomicBool,
    stage: Mutex<Stage>,
}

/// Room before the payload for a request's in_header and operation header.
const PREFIX: usize = IN_HEADER_SIZE + OP_IN_OUT_SIZE;

/// A reply to an in-place request waits here until its dispatch is over:
/// the handler may still hold the request's data, which the reply would
/// overwrite.
#[derive(Default)]
struct Stage {
    in_place: bool,
    reply: Option<(u64, Vec<u8>)>,
}

impl Entry {
    fn payload(&self) -> *mut u8 {
        // SAFETY: room is PREFIX + payload bytes long.
        unsafe { (self.room.as_ptr() as *mut u8).add(PREFIX) }
    }

    fn payload_len(&self) -> usize {
        self.room.len() - PREFIX
    }
}

/// A queue: its ring, its entries, and the thread that serves it.
pub(crate) struct Queue {
    qid: u16,
    ring: Ring,
    entries: Box<[Entry]>,
    dev: Arc<DevFuse>,
    owner: ThreadId,
}

// SAFETY: an entry's buffers are touched by one side at a time: the kernel
// while the entry is registered, then the one reply that holds it.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

/// What a completion meant.
pub(crate) enum Event {
    /// Entry `idx` holds a request, copied into the buffer given.
    Request,
    /// Entry `idx` is gone (unmount, abort, or a refused registration).
    Closed(i32),
}

impl Queue {
    /// Make a queue of `depth` entries with payload buffers of `payload`
    /// bytes, for the calling thread.
    pub(crate) fn new(
        qid: u16,
        depth: u16,
        payload: usize,
        dev: Arc<DevFuse>,
    ) -> io::Result<Arc<Queue>> {
        let ring = Ring::new(u32::from(depth).next_power_of_two())?;
        let entries = (0..depth)
            .map(|_| {
                // SAFETY: ReqHeader is plain bytes and integers: all-zero is valid.
                let header: Box<std::cell::UnsafeCell<ReqHeader>> =
                    Box::new(unsafe { std::mem::zeroed() });
                let room: Box<[std::cell::UnsafeCell<u8>]> = (0..PREFIX + payload)
                    .map(|_| std::cell::UnsafeCell::new(0))
                    .collect();
                let iov = [
                    libc::iovec {
                        iov_base: header.get().cast(),
                        iov_len: size_of::<ReqHeader>(),
                    },
                    libc::iovec {
                        // SAFETY: room is PREFIX + payload bytes long.
                        iov_base: unsafe { (room.as_ptr() as *mut u8).add(PREFIX) }.cast(),
                        iov_len: payload,
                    },
                ];
                Entry {
                    header,
                    room,
                    iov,
                    busy: AtomicBool::new(false),
                    stage: Mutex::new(Stage::default()),
                }
            })
            .collect();
        Ok(Arc::new(Queue {
            qid,
            ring,
            entries,
            dev,
            owner: std::thread::current().id(),
        }))
    }

    pub(crate) fn depth(&self) -> usize {
        self.entries.len()
    }

    fn cmd_req(&self, commit_id: u64) -> [u8; 24] {
        let mut r = [0u8; 24];
        r[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        r[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        r
    }

    /// Register every entry with the kernel.
    pub(crate) fn register(&self) -> io::Result<()> {
        let fd = self.dev.as_raw_fd();
        for (i, e) in self.entries.iter().enumerate() {
            self.ring.push(
                FUSE_IO_URING_CMD_REGISTER,
                fd,
                i as u64,
                Some(&e.iov),
                self.cmd_req(0),
            );
        }
        self.ring.enter(false)
    }

    /// Submit what is queued, wait (if `wait`) for completions, and hand each to `f`
    /// with the entry index. `buf` receives each request as /dev/fuse would
    /// have delivered it (header, operation header, payload).
    pub(crate) fn serve(
        &self,
        buf: &mut Vec<u8>,
        wait: bool,
        courtesy: &Courtesy,
        mut f: impl FnMut(usize, Event, &[u8]),
    ) -> io::Result<()> {
        if wait {
            courtesy.waiting();
        }
        let r = self.ring.enter(wait);
        if wait {
            courtesy.working();
        }
        r?;
        while let Some(cqe) = self.ring.pop() {
            let idx = cqe.user_data as usize;
            if cqe.res < 0 {
                f(idx, Event::Closed(-cqe.res), &[]);
                continue;
            }
            let e = &self.entries[idx];
            e.busy.store(true, Ordering::Release);
            // SAFETY: the kernel filled the entry before completing its
            // command and does not touch it again until we commit.
            let opcode =
                u32::from_ne_bytes(unsafe { &*e.header.get() }.in_out[4..8].try_into().unwrap());
            let done = if opcode == FUSE_WRITE {
                self.request_in_place(idx).map(|req| {
                    e.stage.lock().unwrap().in_place = true;
                    f(idx, Event::Request, req);
                })
            } else {
                self.copy_request(idx, buf)
                    .map(|()| f(idx, Event::Request, buf))
            };
            if let Err(err) = done {
                // Answer it, so that neither the caller nor the entry is lost.
                log::error!("io_uring queue {}: malformed request: {err}", self.qid);
                // SAFETY: as above.
                let unique = u64::from_ne_bytes(
                    unsafe { &*e.header.get() }.in_out[8..16]
                        .try_into()
                        .unwrap(),
                );
                self.commit_in_place(idx, unique, -libc::EIO, 0)?;
                continue;
            }
            let staged = {
                let mut st = e.stage.lock().unwrap();
                st.in_place = false;
                st.reply.take()
            };
            if let Some((commit_id, reply)) = staged {
                self.commit(idx, commit_id, &[IoSlice::new(&reply)])?;
            }
        }
        Ok(())
    }

    /// The operation header's size: what the request's length leaves.
    fn op_size(&self, idx: usize) -> io::Result<(usize, usize)> {
        let e = &self.entries[idx];
        // SAFETY: as in `serve`.
        let h = unsafe { &*e.header.get() };
        let len = u32::from_ne_bytes(h.in_out[0..4].try_into().unwrap()) as usize;
        let payload = h.ent.payload_sz as usize;
        let op = len
            .checked_sub(IN_HEADER_SIZE + payload)
            .filter(|&n| n <= OP_IN_OUT_SIZE && payload <= e.payload_len())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))?;
        Ok((op, payload))
    }

    /// The request laid end to end inside the entry: its headers copied
    /// into the room before the payload, the payload where the kernel put it.
    fn request_in_place(&self, idx: usize) -> io::Result<&[u8]> {
        let (op, payload) = self.op_size(idx)?;
        let e = &self.entries[idx];
        // SAFETY: the entry is ours (see `serve`); the headers go into the
        // prefix, which only we use, and the slice ends inside the payload.
        unsafe {
            let h = &*e.header.get();
            let start = e.payload().sub(IN_HEADER_SIZE + op);
            ptr::copy_nonoverlapping(h.in_out.as_ptr(), start, IN_HEADER_SIZE);
            ptr::copy_nonoverlapping(h.op_in.as_ptr(), start.add(IN_HEADER_SIZE), op);
            Ok(std::slice::from_raw_parts(
                start,
                IN_HEADER_SIZE + op + payload,
            ))
        }
    }

    /// Rebuild the contiguous request from the entry's buffers.
    fn copy_request(&self, idx: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let (op, payload) = self.op_size(idx)?;
        let e = &self.entries[idx];
        // SAFETY: as in `serve`.
        let h = unsafe { &*e.header.get() };
        buf.clear();
        buf.extend_from_slice(&h.in_out[..IN_HEADER_SIZE]);
        buf.extend_from_slice(&h.op_in[..op]);
        // SAFETY: as above; the payload holds `payload` bytes from the kernel.
        buf.extend_from_slice(unsafe { std::slice::from_raw_parts(e.payload(), payload) });
        Ok(())
    }

    /// Write a reply into entry `idx` and give the entry back with
    /// COMMIT_AND_FETCH.
    fn commit(&self, idx: usize, commit_id: u64, data: &[IoSlice<'_>]) -> io::Result<()> {
        let e = &self.entries[idx];
        {
            let mut st = e.stage.lock().unwrap();
            if st.in_place {
                st.reply = Some((
                    commit_id,
                    data.iter().flat_map(|s| s.iter().copied()).collect(),
                ));
                return Ok(());
            }
        }
        let total: usize = data.iter().map(|s| s.len()).sum();
        let body = total.saturating_sub(OUT_HEADER_SIZE);
        let mut header = [0u8; OUT_HEADER_SIZE];
        if total < OUT_HEADER_SIZE || body > e.payload_len() {
            // The payload buffer is at least the kernel's largest reply, so
            // this is a bug: fail the request rather than the connection.
            log::error!("io_uring reply of {total} bytes does not fit the entry");
            return self.commit_in_place(idx, commit_id, -libc::EIO, 0);
        }
        let out = e.payload();
        let mut at = 0usize;
        for s in data {
            let mut s: &[u8] = s;
            if at < OUT_HEADER_SIZE {
                let n = s.len().min(OUT_HEADER_SIZE - at);
                header[at..at + n].copy_from_slice(&s[..n]);
                at += n;
                s = &s[n..];
            }
            if !s.is_empty() {
                // SAFETY: the entry is ours from its completion until the
                // commit, and `at - 16 + s.len() <= body <= payload.len()`.
                unsafe {
                    ptr::copy_nonoverlapping(s.as_ptr(), out.add(at - OUT_HEADER_SIZE), s.len())
                };
                at += s.len();
            }
        }
        let error = i32::from_ne_bytes(header[4..8].try_into().unwrap());
        self.commit_in_place(idx, commit_id, error, body)
    }

    /// Give entry `idx` back with its reply: `error`, and `body` bytes
    /// already in its payload.
    fn commit_in_place(
        &self,
        idx: usize,
        commit_id: u64,
        error: i32,
        body: usize,
    ) -> io::Result<()> {
        let e = &self.entries[idx];
        if !e.busy.swap(false, Ordering::AcqRel) {
            log::error!(
                "io_uring queue {}: a second reply for entry {idx} dropped",
                self.qid
            );
            return Ok(());
        }
        let body = if error == 0 { body } else { 0 };
        // SAFETY: the entry is ours until the push below hands it back.
        let h = unsafe { &mut *e.header.get() };
        h.in_out[..OUT_HEADER_SIZE].fill(0);
        h.in_out[0..4].copy_from_slice(&((OUT_HEADER_SIZE + body) as u32).to_ne_bytes());
        h.in_out[4..8].copy_from_slice(&error.to_ne_bytes());
        h.in_out[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        h.ent.payload_sz = body as u32;
        self.ring.push(
            FUSE_IO_URING_CMD_COMMIT_AND_FETCH,
            self.dev.as_raw_fd(),
            idx as u64,
            None,
            self.cmd_req(commit_id),
        );
        // The queue's thread submits with its next wait; a reply from
        // elsewhere must not wait for that.
        if std::thread::current().id() != self.owner {
            self.ring.enter(false)?;
        }
        Ok(())
    }
}

/// The reply path of one request that came through a ring entry.
#[derive(Debug)]
pub(crate) struct UringSender {
    queue: Arc<Queue>,
    idx: usize,
    commit_id: u64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.qid)
    }
}

impl UringSender {
    pub(crate) fn new(queue: Arc<Queue>, idx: usize, commit_id: u64) -> UringSender {
        UringSender {
            queue,
            idx,
            commit_id,
        }
    }

    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        self.queue.commit(self.idx, self.commit_id, data)
    }

    /// The room for a reply's body in this entry, 0 while the request
    /// lies there (the reply is then staged).
    pub(crate) fn payload_len(&self) -> usize {
        let e = &self.queue.entries[self.idx];
        if e.stage.lock().unwrap().in_place {
            0
        } else {
            e.payload_len()
        }
    }

    /// Reply with what `fill` writes straight into the entry's payload.
    pub(crate) fn send_with(
        &self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<()> {
        let e = &self.queue.entries[self.idx];
        // SAFETY: the entry is ours until the commit below (the request was
        // copied out of it), and `max` fits its payload (checked by the
        // caller).
        let buf = unsafe { std::slice::from_raw_parts_mut(e.payload(), max) };
        match fill(buf) {
            Ok(n) => self
                .queue
                .commit_in_place(self.idx, self.commit_id, 0, n.min(max)),
            Err(err) => {
                let errno = err.raw_os_error().unwrap_or(libc::EIO);
                self.queue
                    .commit_in_place(self.idx, self.commit_id, -errno, 0)
            }
        }
    }

    pub(crate) fn open_backing(&self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<BackingId> {
        BackingId::create(&self.queue.dev, fd)
    }

    pub(crate) unsafe fn wrap_backing(&self, id: u32) -> BackingId {
        // SAFETY: the caller's promise, passed on.
        unsafe { BackingId::wrap_raw(&self.queue.dev, id) }
    }
}

/// How the session talks to the kernel, for logs and `ovlfuse stats`.
#[derive(Debug, Clone, Default)]
pub struct TransportStatus(Arc<Mutex<String>>);

impl TransportStatus {
    /// One line: the transport in use and, for /dev/fuse, why.
    pub fn describe(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn set(&self, s: String) {
        *self.0.lock().unwrap() = s;
    }
}

/// Keeps a caller on its CPU: the replies of the last batch are submitted
/// (and their callers woken) from the queue's wait, and a caller woken
/// while its CPU still runs the queue's thread is moved to an idle CPU,
/// one cross-CPU wake-up per round trip, unless the CPU counts as idle
/// because all it runs is SCHED_IDLE. So the thread waits as SCHED_IDLE
/// and works as SCHED_OTHER (never holding a lock at the lower policy).
/// Measured here with one caller on an idle machine (2 CPUs): the caller
/// moved CPU on 70-85% of round trips and a round trip took 29-30 us, against
/// no moves and 12-15 us this way. Going back to SCHED_OTHER needs root (or
/// CAP_SYS_NICE); without it the thread stays SCHED_OTHER throughout.
pub(crate) struct Courtesy {
    on: bool,
}

fn set_policy(policy: libc::c_int) -> bool {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `p` outlives the call.
    unsafe { libc::sched_setscheduler(0, policy, &p) == 0 }
}

impl Courtesy {
    /// For the calling thread: on only if it can go back and forth.
    pub(crate) fn new() -> Courtesy {
        let on = set_policy(libc::SCHED_IDLE) && set_policy(libc::SCHED_OTHER);
        if !on {
            set_policy(libc::SCHED_OTHER);
        }
        Courtesy { on }
    }

    fn waiting(&self) {
        if self.on {
            set_policy(libc::SCHED_IDLE);
        }
    }

    fn working(&self) {
        if self.on {
            set_policy(libc::SCHED_OTHER);
        }
    }
}

/// The number of queues the kernel wants: one per possible CPU.
pub(crate) fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
                .max()
        })
        .map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |m| m + 1,
        )
}

/// Pin the calling thread to `cpu`, so the kernel's wake-up for a request
/// made there stays on that CPU. Best effort: a cpuset may forbid it.
pub(crate) fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays in bounds
    // for cpu < CPU_SETSIZE, which is checked.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
    }
}
